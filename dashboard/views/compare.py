"""Compare: one input explained by the teacher and the student side by side. Each model's prediction (with the
classes it knows, for images), faithfulness, input check, plausibility against human evidence and rationale
(marked, or shaded by selection probability), the human evidence as a third column, the agreement of the two
rationales, and the comparison as a PNG or an HTML page."""
from __future__ import annotations

import streamlit as st

from dashboard import caching
from dashboard import inputs as I
from dashboard.analysis import InputCheck, PairResult
from dashboard.context import ModelSlot, PageContext, View
from dashboard.environment import device_description
from dashboard.render import cards, export, images, text
from dashboard.render.glossary import GLOSSARY
from dashboard.render.style import SHADINGS, UNDEFINED, format_score, saw_no_features
from dashboard.views.compare_inputs import gather_inputs, pick
from dashboard.widgets import kept
from rekd_core.words import evidence_words


def draw(ctx: PageContext, is_open: bool) -> None:
    items, errors = gather_inputs(ctx)
    ctx.inputs = items
    for message in errors:
        st.error(message)
    notices = [item.notice for item in items if item.notice]
    for notice in notices[:5]:
        st.warning(notice)
    if len(notices) > 5:
        st.warning(f"… and {len(notices) - 5} more notices like these.")
    if not items:
        if not errors:
            st.info("Give an input above: " + ("type or paste a review, upload .txt or .csv files, or pick a bundled "
                                               "example." if ctx.task == "text"
                                               else "upload images or pick a bundled example."))
        return
    item = pick(ctx.task, items)
    if not ctx.ready:
        st.info("The comparison needs a working teacher and student of this task: see the messages above.")
        return
    fit, fit_notes = image_fit(item, ctx) if ctx.task == "vision" else ("squash", [])
    if not is_open:
        return
    shading = st.radio("Show", list(SHADINGS), format_func=SHADINGS.get, horizontal=True,
                       key=kept("shading", "selection"), help=GLOSSARY["selection probability"])
    if shading == "probability":
        st.caption("Each model's colour is the stronger, the likelier its generator was to keep a word or patch "
                   "(its selection probability); outlined: the top k it kept at its ratio.")
    result = caching.explain_cached(ctx, item, fit)
    max_length = ctx.teacher.model.processor.max_length if ctx.task == "text" else None
    if ctx.task == "text" and (result.teacher.truncated or result.student.truncated):
        st.info(f"The review is longer than the models read ({max_length} word pieces): the rest is greyed out "
                "below, marked as unread.")
    human = item.evidence is not None and ctx.task == "text"
    columns = st.columns(3 if human else 2)
    drawn = {}
    for column, slot, exp in zip(columns, ctx.slots, (result.teacher, result.student)):
        with column:
            drawn[slot.role] = explanation_column(slot, exp, item, result, fit, shading, max_length)
    if human:
        with columns[2]:
            human_column(item, result, max_length)
    agreement_image = agreement_section(ctx, item, result, drawn, max_length)
    st.caption(f"Both explanations took {1000 * result.seconds:.0f} ms on {device_description(ctx.device)}.")
    view = export.ComparisonView(
        input_name=item.name, kind=item.kind, teacher_name=ctx.teacher.name, student_name=ctx.student.name,
        teacher_exp=result.teacher, student_exp=result.student, comparison=result.comparison, ratios=ctx.ratios,
        text=item.value if item.kind == "text" else None, true_label=item.label, max_length=max_length,
        original=drawn["teacher"].get("original"), teacher_overlay=drawn["teacher"].get("overlay"),
        student_overlay=drawn["student"].get("overlay"), agreement_image=agreement_image,
        notes=[n for n in (item.notice, *fit_notes, *(slot.range_warning for slot in ctx.slots)) if n],
        evidence=item.evidence if human else None, plausibility=result.plausibility, shading=shading,
        checks={role: check_lines(check) for role, check in result.checks.items()})
    stem = I.download_stem(item)
    left, right, _ = st.columns([1, 1, 2])
    left.download_button("Download comparison (PNG)", data=lambda: export.comparison_png(view),
                         file_name=f"{stem}.png", mime="image/png", key="download_png", on_click="ignore")
    right.download_button("Download comparison (HTML)", data=lambda: export.comparison_html(view).encode("utf-8"),
                          file_name=f"{stem}.html", mime="text/html", key="download_html", on_click="ignore")


def explanation_column(slot: ModelSlot, exp, item: I.InputItem, result: PairResult, fit: str, shading: str,
                       max_length: int | None) -> dict:
    """One model's prediction, what is said about it and its rationale (images: over the image it read and over
    the original); returns the images drawn (for the downloads)."""
    drawn = {}
    st.markdown(f"#### :{'blue' if slot.role == 'teacher' else 'orange'}[{slot.role.title()}]: {slot.name}")
    if slot.range_warning:
        st.warning(slot.range_warning, icon="⚠️")
    st.html(cards.probs_html(exp, slot.colour, true_label=item.label, label_set=item.kind == "image"))
    show_check(result.checks.get(slot.role))
    faithful = cards.faithfulness_line(exp)
    if faithful:
        st.caption(f"Faithfulness here: {faithful}.", help=f"Sufficiency: {GLOSSARY['sufficiency']}  \n"
                   f"Comprehensiveness: {GLOSSARY['comprehensiveness']}")
    if item.evidence is not None and item.kind == "text":
        st.caption(f"Against the human evidence: {text.plausibility_line(result.plausibility.get(slot.role))}.",
                   help=GLOSSARY["plausibility"])
    if exp.scores:
        picked = cards.selection_line(exp, item.kind)
        if item.kind == "text":
            words, total = text.word_counts(exp)
            picked += f" {words} of {total} words highlighted."
        st.caption(picked, help=GLOSSARY["word pieces" if item.kind == "text" else "rationale"] + "  \n"
                   + GLOSSARY["achieved ratio"])
    else:
        one = "word piece" if item.kind == "text" else "patch"
        st.caption(f"CLS model: it reads every {one}, so it has no rationale to show.", help=GLOSSARY["CLS"])
    if item.kind == "text":
        st.html(text.highlight_html(item.value, exp, slot.colour, max_length, shading))
        return drawn
    view = result.views[slot.role]
    selected = exp.selected if exp.scores else range(exp.grid_side ** 2)
    probabilities = exp.selection_probabilities if shading == "probability" and exp.scores else None
    drawn["overlay"] = images.patch_overlay(view, selected, exp.grid_side, slot.colour, probabilities=probabilities)
    drawn["original"] = images.display_image(item.value)
    drawn["view"] = view
    boxes = I.cell_boxes(item.value.width, item.value.height, exp.grid_side, fit)
    left, right = st.columns(2)
    left.image(images.original_overlay(item.value, boxes, selected, slot.colour, probabilities=probabilities),
               caption=f"{slot.role}'s patches on the original ({item.value.width}x{item.value.height})")
    shown = "shaded by selection probability, top-k outlined" if probabilities else "unselected dimmed"
    right.image(drawn["overlay"], caption=f"{slot.role}'s patches on the {view.width}x{view.height} it read ({shown})")
    return drawn


def check_lines(check: InputCheck | None) -> list[str]:
    """The input check as the lines the downloads carry."""
    if check is None:
        return []
    if not check.available:
        return ["Input check unavailable: this checkpoint has no reference statistics."]
    return [("Unlike its test data? " if check.unusual else "Input check: ") + " ".join(check.notes)]


def show_check(check: InputCheck | None) -> None:
    """How familiar the input looks to the model: a warning when a signal says it is unlike the test data, else a
    quiet line; unavailable (and said so) for a checkpoint without reference statistics."""
    if check is None:
        return
    if not check.available:
        st.caption("Input check unavailable: this checkpoint has no reference statistics to compare with "
                   "(scripts/input_reference.py computes them from its test set).", help=GLOSSARY["input check"])
    elif check.unusual:
        st.warning("Unlike its test data? " + " ".join(check.notes), icon=":material/search:")
    else:
        st.caption("Input check: " + " ".join(check.notes), help=GLOSSARY["input check"])


def human_column(item: I.InputItem, result: PairResult, max_length: int | None) -> None:
    """The third column of a review with human evidence (ERASER): the words the annotators marked, and how
    plausible each model's rationale is against them (over the words they read)."""
    st.markdown("#### :violet[Human evidence]")
    words = len(item.value.split())
    marked = len(evidence_words(item.evidence, words))
    scores = {role: result.plausibility.get(role) or {} for role in ("teacher", "student")}
    unread = max((s.get("unread") or 0) for s in scores.values())
    past = f" {unread} of them past where the models stop reading: not counted." if unread else ""
    f1 = {role: format_score(found.get("f1")) for role, found in scores.items()}
    st.caption(f"{marked} of {words} words marked as evidence by human annotators.{past} Teacher F1 {f1['teacher']}, "
               f"student F1 {f1['student']}.", help=GLOSSARY["plausibility"])
    if not marked:
        st.info("The annotators marked no word of this review: there is no plausibility to score.")
    st.html(text.human_html(item.value, item.evidence, text.read_chars(item.value, (result.teacher, result.student)),
                            max_length))


def image_fit(item: I.InputItem, ctx: PageContext) -> tuple[str, list[str]]:
    """The choice of how an image is fitted to the models' square input, and the lines that say what
    that does to this image (shown here and in the downloads)."""
    fit = st.radio("Fit the image to the model's square input", list(I.FIT_MODES), horizontal=True,
                   key=kept("image_fit", "squash"), format_func=lambda mode: I.FIT_MODES[mode].partition(":")[0],
                   help="  \n".join(I.FIT_MODES.values()))
    width, height = item.value.size
    sizes = sorted({slot.model.processor.image_size for slot in ctx.slots})
    notes = [I.describe_fit(width, height, size, fit) for size in sizes]
    for note in notes:
        st.caption(note)
    warning = I.small_image_warning(item.name, width, height, sizes[-1])
    if warning:
        st.warning(warning)
        notes.append(warning)
    return fit, notes


def agreement_section(ctx: PageContext, item: I.InputItem, result: PairResult, drawn: dict, max_length: int | None):
    """Prediction agreement and the overlap of the two rationales; the agreement image (images) or None."""
    st.subheader("Agreement")
    if ctx.check.same_labels:
        agreement_metrics(result)
    cmp = result.comparison
    if cmp is None:
        st.info("The rationale agreement view needs a teacher and a student that both select features (no CLS "
                "model), with the same labels and feature grid.")
        return None
    if not ctx.linked:
        st.caption(f"The two models are read at different ratios (teacher {ctx.teacher.ratio:g}, student "
                   f"{ctx.student.ratio:g}): their rationales differ in size.")
    st.html(text.legend_html(f"teacher ({ctx.teacher.name})", f"student ({ctx.student.name})"))
    if item.kind == "text":
        st.html(text.agreement_html(item.value, result.teacher, cmp, max_length))
        return None
    agreement_image = images.agreement_overlay(drawn["teacher"]["view"], cmp, result.teacher.grid_side)
    left, right, _ = st.columns([1, 1, 2])
    left.image(drawn["teacher"]["original"], caption="original")
    right.image(agreement_image, caption="agreement: both, teacher only, student only")
    return agreement_image


def agreement_metrics(result: PairResult) -> None:
    """Prediction agreement and, when both select over one grid, the overlap of the two rationales. No
    verdict where a model saw no feature, and no IoU where neither selected anything (undefined)."""
    t_exp, s_exp, cmp = result.teacher, result.student, result.comparison
    m = st.columns(4)
    blind = [role for role, exp in (("teacher", t_exp), ("student", s_exp)) if saw_no_features(exp)]
    if blind:
        m[0].metric("Predictions", UNDEFINED, f"{' and '.join(blind)} saw no features", delta_color="off",
                    delta_arrow="off", help="A model that picked no feature has no prediction to compare.")
    else:
        agree = t_exp.label.lower() == s_exp.label.lower()
        m[0].metric("Predictions", "agree" if agree else "disagree", f"teacher {t_exp.label}, student {s_exp.label}",
                    delta_color="off", delta_arrow="off", help=GLOSSARY["agreement"])
    if cmp is None:
        return
    undefined = " Here neither model picked a feature, so there is nothing to overlap." if cmp["iou"] is None else ""
    m[1].metric("Mask IoU", format_score(cmp["iou"]), help=GLOSSARY["mask IoU"] + undefined)
    m[2].metric("Mask F1", format_score(cmp["f1"]), help=GLOSSARY["mask F1"] + undefined)
    m[3].metric("Both / teacher only / student only",
                f"{len(cmp['both'])} / {len(cmp['teacher_only'])} / {len(cmp['student_only'])}",
                help=GLOSSARY["overlap counts"])


VIEW = View("Compare", draw)
