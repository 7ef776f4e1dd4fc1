"""Serving the dashboard to a lab: ``$REKD_ALLOWED_ROOTS`` and uploads that stay off the server's disk.

With ``REKD_ALLOWED_ROOTS`` set, a checkpoint directory, a results file or a dataset path outside its folders
(typed directly, through a symlink inside them or through ``..``) gets one line on the page, and nothing is
opened under it; the checkpoints inside still load. Uploads, their explanations and the downloads write no
file: Python's audit hook sees every file the process opens, and the tests record them. Driven through
Streamlit's AppTest on the tiny checkpoints (tests/dashboard_fixtures.py); the browser test of two sessions
at once is in tests/test_dashboard_e2e.py.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from dashboard import environment as E
from rekd_core.errors import ConfigError

pytest.importorskip("streamlit")

from tests.core_fixtures import image_bytes  # noqa: E402
from tests.dashboard_fixtures import assert_clean  # noqa: E402

pytest_plugins = ["tests.dashboard_fixtures"]

REFUSED = "is outside the folders this server may read (REKD_ALLOWED_ROOTS: "
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
CREATING_EVENTS = {"os.mkdir", "os.rename", "os.link", "os.symlink", "os.truncate", "shutil.copyfile",
                   "shutil.copytree", "shutil.move", "tempfile.mkstemp", "tempfile.mkdtemp"}
LISTING_EVENTS = {"os.listdir", "os.scandir", "glob.glob"}


# ----------------------------------------------------------------------------------------------
# Recording what the process does on disk
# ----------------------------------------------------------------------------------------------


class DiskEvents:
    """The files this process opens (``reads``: any open or folder listing) and writes or creates (``writes``)
    while the ``with`` block runs, from Python's audit events, which every ``open``, ``os.open`` (temporary
    files included) and folder listing raises, in any thread (AppTest runs the page in its own)."""

    recording: list[DiskEvents] = []

    def __init__(self) -> None:
        self.reads: list[str] = []
        self.writes: list[str] = []

    def __enter__(self) -> DiskEvents:
        DiskEvents.recording.append(self)
        return self

    def __exit__(self, *exc) -> None:
        DiskEvents.recording.remove(self)

    def touched(self, folders) -> list[str]:
        """The paths read that lie in one of ``folders`` once resolved (``..`` and symlinks followed)."""
        targets = [Path(folder).resolve() for folder in folders]
        return [p for p in self.reads if any(Path(os.path.realpath(p)).is_relative_to(t) for t in targets)]


def _audit(event: str, args: tuple) -> None:
    if not DiskEvents.recording:
        return
    path = args[0] if args else None
    if isinstance(path, int) or path is None:  # a file descriptor: its open was recorded
        return
    path = os.fsdecode(path) if isinstance(path, (str, bytes, os.PathLike)) else str(path)
    writes = (event == "open" and isinstance(args[2], int) and args[2] & WRITE_FLAGS) or event in CREATING_EVENTS
    for recorder in DiskEvents.recording:
        if event == "open" or event in LISTING_EVENTS:
            recorder.reads.append(path)
        if writes:
            recorder.writes.append(path)


sys.addaudithook(_audit)  # for the whole session (a hook cannot be removed): idle unless a test records


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


def only(elements, prefix: str):
    found = [e for e in elements if str(e.key).startswith(prefix)]
    assert len(found) == 1, [e.key for e in elements]
    return found[0]


def refusals(at) -> list[str]:
    return [e.value for e in at.error if REFUSED in e.value]


def shown_text(at) -> str:
    """The page's lines (errors, warnings, notes, captions, text), its tables (as CSV) and its download buttons;
    not the text fields (what the visitor typed) nor the model cards (a card names the data its model was
    trained on, a path the visitor did not type)."""
    parts = [e.value for kind in ("error", "warning", "info", "caption", "markdown", "success") for e in at.get(kind)]
    parts += [frame.value.to_csv() for frame in at.dataframe]
    parts += [str(b.proto) for b in at.get("download_button")]
    return "\n".join(parts)


@pytest.fixture
def lab(tiny_checkpoints, tmp_path, monkeypatch) -> SimpleNamespace:
    """A lab's layout around the tiny checkpoints: the roots are the checkpoints folder and ``lab/``, which
    holds a copy of the text dataset and symlinks that lead outside (to a valid checkpoint, the dataset and a
    results file, all outside the roots). Every log record of the test is kept in ``logs``."""
    import logging

    inside, outside = tmp_path / "lab", tmp_path / "outside"
    inside.mkdir()
    outside.mkdir()
    shutil.copy(tiny_checkpoints.results, outside / "results.csv")
    shutil.copytree(tiny_checkpoints.text_data, inside / "text")
    (inside / "teacher-link").symlink_to(tiny_checkpoints.relabelled, target_is_directory=True)
    (inside / "data-link").symlink_to(tiny_checkpoints.text_data, target_is_directory=True)
    (inside / "results-link.csv").symlink_to(outside / "results.csv")
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(level=logging.DEBUG)
    loggers = [logging.getLogger(), logging.getLogger("streamlit")]
    for logger in loggers:
        logger.addHandler(handler)
    yield SimpleNamespace(inside=inside, outside=outside, roots=f"{tiny_checkpoints.root}{os.pathsep}{inside}",
                          logs=records)
    for logger in loggers:
        logger.removeHandler(handler)


def assert_never_shown(at, lab, *paths) -> None:
    """None of ``paths`` (typed or resolved) is in a line, table or download of the page (``shown_text``), or in
    a log line."""
    text = shown_text(at) + "\n".join(r.getMessage() for r in lab.logs)
    for path in paths:
        assert str(path) not in text, str(path)


# ----------------------------------------------------------------------------------------------
# The check itself
# ----------------------------------------------------------------------------------------------


def test_allowed_roots_resolve_symlinks_and_dotdot(tmp_path, monkeypatch):
    root, outside, sibling = tmp_path / "lab", tmp_path / "secret", tmp_path / "lab-secrets"
    for folder in (root, outside, sibling):
        folder.mkdir()
    (root / "data.csv").write_text("text,label\n")
    (root / "out").symlink_to(outside, target_is_directory=True)
    (outside / "in").symlink_to(root, target_is_directory=True)
    (root / "loop").symlink_to(root / "loop")

    monkeypatch.delenv("REKD_ALLOWED_ROOTS", raising=False)
    assert E.allowed_roots() is None and E.is_allowed_path("/etc/passwd")  # unset: one user, any path
    monkeypatch.setenv("REKD_ALLOWED_ROOTS", f" {os.pathsep} ")
    assert E.allowed_roots() is None  # names no folder: as unset

    monkeypatch.setenv("REKD_ALLOWED_ROOTS", f"{tmp_path / 'elsewhere'}{os.pathsep}{os.pathsep}{root}")
    assert E.allowed_roots() == [(tmp_path / "elsewhere").resolve(), root.resolve()]
    for allowed in (root, root / "data.csv", root / "not-yet" / "x.csv", outside / "in" / "data.csv",
                    f"{root}/sub/../data.csv"):
        assert E.is_allowed_path(allowed), allowed
    for refused in (outside, "/etc/passwd", sibling, root / "out", root / "out" / "x", f"{root}/../secret",
                    f"{root}/sub/../../secret", root / "loop", f"{root}/a\0b", "~"):
        assert not E.is_allowed_path(refused), refused

    with pytest.raises(ConfigError) as error:
        E.check_allowed_path(root / "out", "This results file")
    message = str(error.value)
    assert message.startswith(f"This results file {REFUSED}{(tmp_path / 'elsewhere').resolve()}, {root.resolve()})")
    assert "\n" not in message and str(root / "out") not in message and str(outside) not in message
    E.check_allowed_path("", "An empty field")  # names nothing: nothing to refuse
    E.check_allowed_path(root / "data.csv", "This results file")

    assert [E.dataset_spec_path(s) for s in ("csv:/a/b", " eraser-movies: ~/x ", "imdb", "cifar10", "", None)] == \
        ["/a/b", "~/x", "", "", "", ""]
    E.check_dataset_allowed(f"csv:{root}")
    E.check_dataset_allowed("cifar10")  # no path: the hub, not this machine's files
    with pytest.raises(ConfigError, match="This dataset's path is outside"):
        E.check_dataset_allowed(f"aclimdb:{root}/out")
    assert E.local_dataset_spec(f"csv:{root}") == f"csv:{root}"
    assert E.local_dataset_spec(f"csv:{outside}") == ""  # not offered as a default either


# ----------------------------------------------------------------------------------------------
# The page with REKD_ALLOWED_ROOTS set
# ----------------------------------------------------------------------------------------------


def test_checkpoints_outside_the_roots_are_refused_and_those_inside_load(make_app, tiny_checkpoints, lab):
    at = make_app(REKD_ALLOWED_ROOTS=lab.roots)
    # The checkpoints under the roots load as without the variable: both cards and the comparison.
    assert len([h for h in at.html if "feature grid" in h.value]) == 2
    assert "Mask IoU" in {m.label for m in at.metric} and not refusals(at)
    # The student's dataset lies outside the roots: it is not offered as the dataset fields' default.
    assert only(at.text_input, "eval_spec").value == ""

    at.sidebar.selectbox(key="teacher_text").set_value("__type_a_path__").run()
    outside = tiny_checkpoints.relabelled  # a valid checkpoint that the page would load without the roots
    typed = [str(outside), str(lab.inside / "teacher-link"), f"{tiny_checkpoints.root}/../broken/relabelled"]
    with DiskEvents() as disk:
        for path in typed:
            at.sidebar.text_input(key="teacher_text_path").set_value(path).run()
            assert_clean(at)
            assert refusals(at) == [f"Teacher: this checkpoint directory {REFUSED}{tiny_checkpoints.root.resolve()}, "
                                    f"{lab.inside.resolve()}); nothing was read from it"], path
            assert any("needs a working teacher and student" in i.value for i in at.info)
    assert not disk.touched([outside]), disk.touched([outside])
    assert_never_shown(at, lab, outside, *typed)

    at.sidebar.text_input(key="teacher_text_path").set_value(str(tiny_checkpoints.text_teacher)).run()
    assert_clean(at)
    assert not refusals(at) and "Mask IoU" in {m.label for m in at.metric}  # a typed path inside loads


def test_the_shipped_checkpoints_inside_the_roots_load(make_app):
    """The repository's own checkpoints, served with the roots a lab would set for them: the text pair the page
    opens on loads and explains, and the ratios view reads checkpoints/results.csv."""
    shipped = E.REPO_ROOT / "checkpoints"
    if not (shipped / "text" / "variants" / "teacher-re-minilm-more" / "model.safetensors").is_file():
        pytest.skip("the shipped checkpoints are not in this checkout")
    at = make_app(REKD_CHECKPOINTS=shipped, REKD_ALLOWED_ROOTS=shipped)
    assert not refusals(at), refusals(at)
    assert at.sidebar.selectbox(key="teacher_text").value.endswith("teacher-re-minilm-more")
    assert len([h for h in at.html if "feature grid" in h.value]) == 2 and "Mask IoU" in {m.label for m in at.metric}
    assert len(at.get("plotly_chart")) >= 2
    assert only(at.text_input, "eval_spec").value == ""  # the student's IMDB lies outside these roots


def test_a_checkpoints_folder_outside_the_roots_lists_nothing(make_app, tiny_checkpoints, lab):
    at = make_app(REKD_ALLOWED_ROOTS=lab.inside)
    assert [e.value for e in at.sidebar.error] == [
        f"The checkpoints folder (REKD_CHECKPOINTS) {REFUSED}{lab.inside.resolve()}); nothing was read from it"]
    assert all(s.key != "teacher_text" for s in at.sidebar.selectbox)  # nothing discovered: path boxes only
    assert not any("No text checkpoints found" in i.value for i in at.sidebar.info)


def test_results_files_outside_the_roots_are_refused(make_app, tiny_checkpoints, lab):
    at = make_app(REKD_ALLOWED_ROOTS=lab.roots)
    assert len(at.get("plotly_chart")) >= 2 and not refusals(at)  # the default results file, inside the roots
    typed = [str(lab.outside / "results.csv"), str(lab.inside / "results-link.csv"),
             f"{lab.inside}/../outside/results.csv"]
    with DiskEvents() as disk:
        for path in typed:
            at.text_input(key="results_path").set_value(path).run()
            assert_clean(at)
            assert refusals(at) == [f"This results file {REFUSED}{tiny_checkpoints.root.resolve()}, "
                                    f"{lab.inside.resolve()}); nothing was read from it"], path
            assert not at.get("plotly_chart") and not any("No results file" in i.value for i in at.info)
    assert not disk.touched([lab.outside]), disk.touched([lab.outside])
    assert_never_shown(at, lab, lab.outside, *typed)


def test_datasets_outside_the_roots_are_refused_in_every_view(make_app, tiny_checkpoints, lab):
    at = make_app(REKD_ALLOWED_ROOTS=lab.roots)
    typed = [f"csv:{tiny_checkpoints.text_data}", f"csv:{lab.inside}/data-link",
             f"csv:{tiny_checkpoints.root}/../textdata"]
    line = (f"This dataset's path {REFUSED}{tiny_checkpoints.root.resolve()}, {lab.inside.resolve()}); "
            "nothing was read from it")
    at.number_input(key="eval_n").set_value(10)
    at.multiselect(key="eval_ratios").set_value([0.2])
    at.radio(key="browse_source").set_value("A local dataset").run()
    with DiskEvents() as disk:
        for spec in typed:  # the live evaluation
            only(at.text_input, "eval_spec").set_value(spec)
            at.button(key="eval_run").click().run()
            assert_clean(at)
            assert refusals(at) == [line], spec
            assert not any("teacher_mask_iou" in d.value.columns for d in at.dataframe)
        only(at.text_input, "browse_spec").set_value(typed[1])  # the dataset browser
        at.button(key="browse_run").click().run()
        assert refusals(at) == [line] and not any(str(d.key).startswith("browser_table") for d in at.dataframe)
        at.radio(key="source_text").set_value("Dataset sample").run()  # a sample in the compare view
        only(at.text_input, "compare_spec").set_value(typed[2]).run()
        assert_clean(at)
        assert refusals(at) == [line] and not any(str(d.key).startswith("browser_table") for d in at.dataframe)
    assert not disk.touched([tiny_checkpoints.text_data]), disk.touched([tiny_checkpoints.text_data])
    assert_never_shown(at, lab, tiny_checkpoints.text_data, *typed)

    at.radio(key="source_text").set_value("Bundled example")
    only(at.text_input, "eval_spec").set_value(f"csv:{lab.inside / 'text'}")  # a dataset inside: evaluated
    at.button(key="eval_run").click().run()
    assert_clean(at)
    assert not refusals(at)
    assert any("teacher_mask_iou" in d.value.columns for d in at.dataframe)


# ----------------------------------------------------------------------------------------------
# Uploads stay off the disk
# ----------------------------------------------------------------------------------------------


def test_uploads_explanations_and_downloads_write_no_file(make_app, monkeypatch):
    """An uploaded review and images, explained and exported as PNG and HTML (the page's own download
    callables, called as a click would): no file is written or created anywhere, so no part of an upload
    can be left on the server's disk."""
    from streamlit.runtime.media_file_manager import MediaFileManager

    exports = []
    add_deferred = MediaFileManager.add_deferred
    monkeypatch.setattr(MediaFileManager, "add_deferred",
                        lambda self, data, *args, **kw: exports.append(data) or add_deferred(self, data, *args, **kw))
    at = make_app()
    at.sidebar.radio(key="task").set_value("vision").run()  # the vision pair loads before recording
    at.radio(key="source_vision").set_value("Upload images").run()
    rng = np.random.default_rng(3)
    images = [(f"photo{i}.png", image_bytes(Image.fromarray(rng.integers(0, 255, (40 + i, 50, 3), dtype=np.uint8)),
                                           "PNG"), "image/png") for i in range(2)]
    with DiskEvents() as disk:
        exports.clear()
        at.file_uploader(key="upload_vision").set_value(images).run()
        at.selectbox(key="pick_vision").set_value(1).run()
        assert_clean(at)
        assert any("original (50x41)" in c for img in at.get("image") for c in img.captions)
        at.sidebar.radio(key="task").set_value("text").run()
        at.radio(key="source_text").set_value("Upload .txt / .csv files").run()
        at.file_uploader(key="upload_text").set_value([
            ("mine.txt", "fillerab splendid fillerac, a private review".encode("utf-8"), "text/plain"),
            ("mine.csv", b"text,label\nfillerab dreadful fillerad,neg\n", "text/csv")]).run()
        assert_clean(at)
        assert any("private" in h.value for h in at.html)
        outputs = [export() for export in exports]
    assert len(outputs) >= 4 and any(b"<!DOCTYPE html>" in (o if isinstance(o, bytes) else b"") for o in outputs)
    assert any(isinstance(o, bytes) and o.startswith(b"\x89PNG") for o in outputs)
    assert disk.reads, "the recorder saw nothing: the audit hook is not working"
    assert disk.writes == [], disk.writes


def multipart_body(size: int) -> tuple[bytes, str]:
    boundary = "rekdboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + b"x" * size + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def parse_upload(body: bytes, content_type: str):
    """``body`` parsed as Streamlit's upload route parses it (Starlette's ``Request.form()``); the file's bytes."""
    from starlette.requests import Request

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def parse():
        scope = {"type": "http", "method": "PUT", "headers": [(b"content-type", content_type.encode())]}
        form = await Request(scope, receive).form()
        upload = form["file"]
        try:
            return await upload.read()
        finally:
            await upload.close()

    return asyncio.run(parse())


def test_large_uploads_are_not_spooled_to_disk(make_app, monkeypatch):
    """Streamlit's server parses uploads with Starlette, which writes a file of more than 1 MB to a temporary
    file unless the page raised its spool size (``keep_uploads_in_memory``) above ``server.maxUploadSize``."""
    import streamlit as st
    from starlette.formparsers import MultiPartParser

    body, content_type = multipart_body(3 * 1024 * 1024)
    monkeypatch.setattr(MultiPartParser, "spool_max_size", 1024 * 1024)  # Starlette's own default
    with DiskEvents() as disk:
        assert len(parse_upload(body, content_type)) == 3 * 1024 * 1024
    assert disk.writes, "without the page's setting the parser spools to disk: this test could not see it"

    make_app()  # the page raises the spool size as it starts
    assert MultiPartParser.spool_max_size > st.get_option("server.maxUploadSize") * 1024 * 1024
    with DiskEvents() as disk:
        assert len(parse_upload(body, content_type)) == 3 * 1024 * 1024
    assert disk.writes == [], disk.writes
