"""The sidebar: the task, the device, the teacher and the student (any checkpoint found, or a typed path), and the
ratio each is read at (one slider for both, or one each), with a ruler that marks where each was trained."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard import caching
from dashboard import checkpoints as C
from dashboard import environment as E
from dashboard.context import ModelSlot, PageContext
from dashboard.render.cards import ratio_marks_html
from dashboard.render.glossary import GLOSSARY
from dashboard.render.style import ROLE_COLOURS
from rekd_core.errors import RekdError
from rekd_core.inputs import DEVICES

TYPE_PATH = "__type_a_path__"
MODES_HELP = f"CLS: {GLOSSARY['CLS']}  \nRE: {GLOSSARY['RE']}  \nREKD: {GLOSSARY['REKD']}"


def sidebar() -> PageContext:
    """Draw the sidebar; the page's context as it was set there."""
    with st.sidebar:
        st.title("REKD dashboard")
        task = st.radio("Task", list(C.TASKS), format_func=C.TASKS.get, key="task")
        choice = st.selectbox("Device", DEVICES, key="device",
                              help="auto picks a CUDA GPU, then Apple MPS, then the CPU")
        device, warning = E.pick_device(choice)
        st.caption(f"In use: **{E.device_description(device)}**")
        if warning:
            st.warning(warning)
        st.subheader("Models")
        infos = _discovered(task)
        headlines = caching.cached_headlines(str(E.checkpoints_root()), "checkpoints", E.recipe_mtime())
        defaults = C.default_pair(infos, headlines)
        names = {info.path: info.name for info in infos}
        slots = []
        for role, default in zip(C.ROLES, defaults):
            path = pick_checkpoint(role, task, infos, default)
            model, error = caching.load(path, device)
            span = model.config.trained_range if model is not None else None
            slots.append(ModelSlot(role, path, model, error, names.get(path, Path(path).name), span, 0.1))
        linked = ratio_sliders(slots)
    return PageContext(task, device, infos, *slots, linked=linked)


def _discovered(task: str) -> list[C.CheckpointInfo]:
    """The checkpoints of ``task`` under the checkpoints folder, with a line for each folder that is none."""
    root = E.checkpoints_root()
    try:
        E.check_allowed_path(root, "The checkpoints folder (REKD_CHECKPOINTS)")
        infos, problems = caching.cached_discovery(str(root))
    except RekdError as exc:
        st.error(str(exc))
        infos, problems = [], []
    found = [info for info in infos if info.task == task]
    if not found and E.is_allowed_path(root):
        st.info(f"No {task} checkpoints found under `{root}`. Type checkpoint directories below, "
                "or set REKD_CHECKPOINTS to a folder of checkpoints.")
    if problems:
        with st.expander(f"{len(problems)} folder(s) under the checkpoints root skipped"):
            for line in problems:
                st.caption(line)
    return found


def pick_checkpoint(role: str, task: str, infos: list, default: int | None) -> str:
    """A selectbox of the discovered checkpoints and a "type a path" choice; the chosen path."""
    key = f"{role}_{task}"
    if infos:
        options = [info.path for info in infos] + [TYPE_PATH]
        labels = {info.path: info.option_label for info in infos}
        labels[TYPE_PATH] = "Other directory (type a path)…"
        choice = st.selectbox(f"{role.title()} checkpoint", options, index=default or 0, key=key,
                              format_func=lambda p: labels.get(p, p), help=MODES_HELP)
        if choice != TYPE_PATH:
            return choice
    return st.text_input(f"{role.title()} checkpoint directory", key=f"{key}_path",
                         placeholder="/path/to/checkpoint (a folder with config.json)").strip()


def ratio_sliders(slots: list[ModelSlot]) -> bool:
    """One ratio slider for both models (linked, the default) or one each, starting at the pair's trained ratio,
    with each model's trained ratio (or range) marked under it; sets each slot's ``ratio``. Whether linked."""
    trained = [s.model.ratio for s in reversed(slots) if s.model is not None and s.model.generator is not None]
    start = min(max(round(trained[0], 2) if trained else 0.1, 0.01), 1.0)
    pair = tuple(slot.path for slot in slots)
    new_pair = st.session_state.get("_pair") != pair
    st.session_state["_pair"] = pair
    linked = st.toggle("One ratio for both models", value=True, key="link_ratios",
                       help="Off: read the teacher and the student at different ratios.")
    if linked:
        ratio = _slider("ratio", "Rationale ratio (top-k at inference)", start, new_pair)
        for slot in slots:
            slot.ratio = ratio
        _ruler(ratio, slots)
    else:
        shared = st.session_state.get("ratio", start)  # where the one slider was: both start there
        for slot in slots:
            own = min(max(round(slot.model.ratio, 2), 0.01), 1.0) if slot.span else start
            slot.ratio = _slider(f"ratio_{slot.role}", f"{slot.role.title()}'s ratio", own if new_pair else shared,
                                 new_pair)
            _ruler(slot.ratio, [slot])
    cls_roles = [slot.role for slot in slots if slot.model is not None and slot.span is None]
    if cls_roles:
        st.caption(" and ".join(cls_roles).capitalize() + ": CLS, reads everything at any ratio.",
                   help=GLOSSARY["CLS"])
    return linked


def _slider(key: str, label: str, start: float, reset: bool) -> float:
    """A ratio slider at ``start`` when new (or ``reset``: another pair). Otherwise ``start`` is also the slider's
    own default: a click during the page's first run makes the browser redraw the slider at its default, and
    without one it showed (and then sent) 0.01. (Both a default and a value set here would make Streamlit warn.)"""
    default = {"value": start}
    if reset or key not in st.session_state:
        st.session_state[key] = start
        default = {}
    return float(st.slider(label, 0.01, 1.0, step=C.RATIO_STEP, key=key, help=GLOSSARY["ratio"], **default))


def _ruler(ratio: float, slots: list[ModelSlot]) -> None:
    marks = [(slot.role, *slot.span, ROLE_COLOURS[slot.role]) for slot in slots if slot.span]
    if marks:
        st.html(ratio_marks_html(ratio, marks))
