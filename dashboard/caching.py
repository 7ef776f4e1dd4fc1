"""What the page keeps between reruns and sessions (Streamlit caches): models load once per (path, device, weights
modification time); checkpoint discovery is refreshed every few seconds; datasets, the results file and uploads
are read once per spec, modification or content; recent explanations are kept, keyed by everything they depend on.
Every path is checked against ``$REKD_ALLOWED_ROOTS`` before its cache is asked, so that a cache is no way round it.
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict

import streamlit as st

from dashboard import checkpoints as C
from dashboard import environment as E
from dashboard import inputs as I
from dashboard.analysis import PairResult, explain_pair
from dashboard.context import PageContext
from dashboard.results_file import load_results, ratio_range_comparison
from rekd_core.errors import RekdError
from rekd_core.familiarity import REFERENCE_FILE, read_reference


@st.cache_resource(max_entries=8, show_spinner="Loading model…")
def cached_model(path: str, device: str, mtime: float):
    model = C.load_model(path, device)
    C.warm_up(model)
    return model


def load(path: str, device) -> tuple[object | None, str | None]:
    """(the model at ``path`` or None, the one line that says why not)."""
    if not path:
        return None, None
    try:
        E.check_allowed_path(path, "this checkpoint directory")  # before anything touches it, cache included
        return cached_model(path, str(device), C.weights_mtime(path)), None
    except RekdError as exc:
        return None, str(exc)
    except Exception as exc:  # noqa: BLE001 - never let a broken checkpoint take the page down
        return None, f"{path}: cannot load this checkpoint ({type(exc).__name__}: {exc})"


@st.cache_data(ttl=10, show_spinner=False)
def cached_discovery(root: str):
    return C.discover_checkpoints(root)


@st.cache_resource(max_entries=16, show_spinner=False)
def cached_reference(path: str, mtime: float) -> dict | None:
    return read_reference(path)


def reference_mtime(path: str) -> float:
    """Modification time of the checkpoint's input reference (0 when it has none)."""
    try:
        return os.path.getmtime(os.path.join(path, REFERENCE_FILE))
    except OSError:
        return 0.0


def input_reference(path: str) -> dict | None:
    """The reference statistics of the input check kept in the checkpoint at ``path`` (None when it has none)."""
    mtime = reference_mtime(path)
    return cached_reference(path, mtime) if mtime else None


@st.cache_resource(max_entries=2, show_spinner="Reading the dataset…")
def cached_dataset(spec: str):
    return I.load_dataset(spec)


def read_dataset(spec: str):
    """The dataset ``spec`` names, read once (``cached_dataset``), and only when its path lies inside
    ``$REKD_ALLOWED_ROOTS``: checked on every call, before the cache, so a cached dataset is no way round it."""
    E.check_dataset_allowed(spec)
    return cached_dataset(spec)


def dataset_sample(spec: str, task: str, split: str, n: int, seed: int) -> list:
    """A sample of the dataset ``spec`` as input items (``read_dataset``, then ``cached_dataset_items``)."""
    return cached_dataset_items(spec, task, split, n, seed, read_dataset(spec))


@st.cache_resource(max_entries=4, show_spinner="Sampling the dataset…")
def cached_dataset_items(spec: str, task: str, split: str, n: int, seed: int, _bundle) -> list:
    """A dataset sample as input items (with their human evidence, where the dataset has some); ``_bundle``
    is the dataset ``spec`` names (not hashed: the spec stands for it in the cache key)."""
    if _bundle.task != task:
        raise RekdError(f"{spec} is a {_bundle.task} dataset, but the task picked is {task}")
    return I.dataset_items(_bundle, split, n, seed)


@st.cache_data(max_entries=4, show_spinner=False)
def cached_results(path: str, mtime: float, headlines: dict):
    return load_results(path, headlines)


@st.cache_data(max_entries=4, show_spinner=False)
def cached_range_comparison(path: str, mtime: float, headlines: dict):
    return ratio_range_comparison(path, headlines=headlines)


@st.cache_data(max_entries=4, show_spinner=False)
def cached_headlines(written: str, what: str, recipe_mtime: float) -> dict:
    return E.recipe_headlines(written, what)


@st.cache_resource(max_entries=64, show_spinner=False)
def cached_upload(task: str, name: str, data: bytes) -> list:
    """Uploads are decoded once, not on every rerun (failures are not cached: they raise again)."""
    return I.parse_text_upload(name, data) if task == "text" else [I.parse_image_upload(name, data)]


@st.cache_resource(show_spinner=False)
def cached_examples(task: str):
    return I.load_examples(task)


@st.cache_resource(show_spinner=False)
def explanation_store() -> tuple[OrderedDict, threading.Lock]:
    """Recent explanations, so that a rerun caused by another widget does not run the models again
    (shared by all sessions: an explanation depends only on the models, the input and the ratios)."""
    return OrderedDict(), threading.Lock()


def explain_cached(ctx: PageContext, item: I.InputItem, fit: str) -> PairResult:
    """``analysis.explain_pair`` of the loaded pair on ``item``, at the page's ratios, kept in
    ``explanation_store``."""
    references = {slot.role: input_reference(slot.path) for slot in ctx.slots}
    key = (ctx.pair_key, str(ctx.device), *(C.weights_mtime(slot.path) for slot in ctx.slots),
           tuple(ctx.ratios.items()), ctx.check.agreement, item.kind, item.digest, fit, item.size,
           None if item.evidence is None else tuple(map(tuple, item.evidence)),
           *(reference_mtime(slot.path) for slot in ctx.slots))
    store, lock = explanation_store()
    with lock:
        if key in store:
            store.move_to_end(key)
            return store[key]
    result = explain_pair(ctx.teacher.model, ctx.student.model, item, ctx.ratios, agreement=ctx.check.agreement,
                          fit=fit, references=references)
    with lock:
        store[key] = result
        while len(store) > 64:
            store.popitem(last=False)
    return result
