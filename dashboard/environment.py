"""Where the page runs: the folders and files it reads (checkpoints, results, the recipe), which of them a page
served to a lab may read (``$REKD_ALLOWED_ROOTS``: ``check_allowed_path``, one check for checkpoints, results
files and dataset paths), uploads kept off the server's disk, the device and torch's threads. No Streamlit here.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from rekd_core.config import load_config_file
from rekd_core.errors import ConfigError
from rekd_core.inputs import resolve_device
from rekd_core.results import recipe_headline
from rekd_core.sweep import recipe_outputs

if TYPE_CHECKING:
    import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------------
# Paths and devices
# ----------------------------------------------------------------------------------------------


def checkpoints_root() -> Path:
    """Where checkpoints are looked for: ``$REKD_CHECKPOINTS``, else the repository's ``checkpoints/``."""
    value = os.environ.get("REKD_CHECKPOINTS", "").strip()
    return Path(value).expanduser() if value else REPO_ROOT / "checkpoints"


def default_recipe_path() -> Path:
    """The recipe of the shipped checkpoints: ``$REKD_RECIPE``, else the repository's configs/embedded.yaml."""
    value = os.environ.get("REKD_RECIPE", "").strip()
    return Path(value).expanduser() if value else REPO_ROOT / "configs" / "embedded.yaml"


def recipe_headlines(written: str | Path, what: str) -> dict[str, dict]:
    """The ``headline`` of the recipe at ``default_recipe_path()`` (group -> {"variant", "unnamed"}: which
    family of a group its shipped models are) when that recipe writes ``written``, its results file
    (``what`` "results") or its checkpoints root ("checkpoints"); {} otherwise, or when no readable
    recipe is there: then a group's runs without a variant are its headline. The recipe's relative paths
    are read from the repository root, where ``rekd sweep`` runs."""
    path = default_recipe_path()
    try:
        recipe = load_config_file(str(path), known=None) if path.is_file() else {}
        roots, results = recipe_outputs(recipe)
        headline = recipe_headline(recipe)
    except (ConfigError, TypeError):
        return {}
    mine = results if what == "results" else roots.shipped
    return headline if (REPO_ROOT / mine).resolve() == Path(written).expanduser().resolve() else {}


def recipe_mtime() -> float:
    """Modification time of the recipe (0 when absent): part of the cache keys of what it labels."""
    try:
        return default_recipe_path().stat().st_mtime
    except OSError:
        return 0.0


def default_results_path() -> Path:
    """The results file of the ratios view: ``$REKD_RESULTS``, else ``<checkpoints root>/results.csv``."""
    value = os.environ.get("REKD_RESULTS", "").strip()
    return Path(value).expanduser() if value else checkpoints_root() / "results.csv"


def pick_device(choice: str) -> tuple["torch.device", str | None]:
    """``(torch.device, warning or None)``: the device asked for, or the CPU when it is absent here (the
    dashboard keeps working and says so, where the CLI stops with ``resolve_device``'s error)."""
    import torch

    try:
        return resolve_device(choice), None
    except ConfigError as exc:
        return torch.device("cpu"), f"{exc}; running on the CPU instead"


def configure_torch_threads() -> int:
    """Set torch's CPU threads for interactive use: ``$REKD_DASHBOARD_THREADS``, else half the cores.

    One explanation is a batch of one, which gains little from many threads, while a thread per
    core stalls badly as soon as anything else runs (on a busy 2-core machine, 2 threads made one
    explanation 5 to 40 times slower than 1). Half the cores leaves room for the server and others.
    """
    import torch

    value = os.environ.get("REKD_DASHBOARD_THREADS", "").strip()
    threads = int(value) if value.isdigit() and int(value) > 0 else max(1, (os.cpu_count() or 2) // 2)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def device_description(device: "torch.device") -> str:
    """The device as the page shows it: the GPU's name, or the CPU with its torch thread count."""
    import torch

    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "mps":
        return "mps (Apple GPU)"
    threads = torch.get_num_threads()
    return f"cpu ({threads} thread{'s' if threads != 1 else ''})"


# ----------------------------------------------------------------------------------------------
# Serving the page to several people: the folders it may read, and uploads kept off the disk
# ----------------------------------------------------------------------------------------------

ALLOWED_ROOTS_ENV = "REKD_ALLOWED_ROOTS"


def allowed_roots() -> list[Path] | None:
    """The folders ``$REKD_ALLOWED_ROOTS`` names (separated by ``os.pathsep``, as in ``PATH``), each with ``~``,
    symlinks and ``..`` resolved; None when it is unset or names none: then the page reads any path, as it
    should for one person on their own machine. Read on every call, so that the check never hides in a cache."""
    value = os.environ.get(ALLOWED_ROOTS_ENV, "")
    roots = [Path(part.strip()).expanduser().resolve() for part in value.split(os.pathsep) if part.strip()]
    return roots or None


def is_allowed_path(path: str | Path) -> bool:
    """Whether the page may read ``path``: always when ``allowed_roots()`` is None, else when ``path``, once
    ``~``, symlinks and ``..`` are resolved, lies inside one of the roots. Only the name is resolved (symlinks
    followed): nothing is read from the path. An unresolvable path (a symlink loop, a NUL byte) is outside."""
    roots = allowed_roots()
    if roots is None:
        return True
    try:
        resolved = Path(str(path).strip()).expanduser().resolve()
    except (OSError, RuntimeError, ValueError):
        return False
    return any(resolved.is_relative_to(root) for root in roots)


def check_allowed_path(path: str | Path, what: str) -> None:
    """``ConfigError`` with one line when the page may not read ``path`` (``is_allowed_path``). ``what`` names
    the field ("This results file"). The line names the allowed roots, never the path: resolved, it would
    show where a symlink points. An empty path passes: it names nothing, and the caller says so."""
    if str(path).strip() and not is_allowed_path(path):
        roots = ", ".join(str(root) for root in allowed_roots() or [])
        raise ConfigError(f"{what} is outside the folders this server may read ({ALLOWED_ROOTS_ENV}: {roots}); "
                          "nothing was read from it")


def dataset_spec_path(spec: str | None) -> str:
    """The path of a dataset spec as ``rekd_core.data.load_dataset_spec`` reads it (``csv:DIR`` -> ``DIR``);
    "" for a spec that names none (``imdb``, ``cifar10``: the Hugging Face hub)."""
    _, _, raw = (spec or "").strip().partition(":")
    return raw.strip()


def check_dataset_allowed(spec: str) -> None:
    """``check_allowed_path`` on the path of a dataset spec (``dataset_spec_path``)."""
    check_allowed_path(dataset_spec_path(spec), "This dataset's path")


def keep_uploads_in_memory(max_upload_mb: float) -> None:
    """Make Streamlit's server keep every upload of up to ``max_upload_mb`` MB (its ``server.maxUploadSize``) in
    memory from the socket on. It parses an upload with Starlette, whose multipart parser spools a file of more
    than 1 MB into an anonymous temporary file in the system's temporary folder before Streamlit reads it into
    memory, where every upload is kept anyway (and where it is dropped when its session ends). Raising the
    parser's spool size above the upload limit means that no byte of an upload is written to the server's disk.
    Process-wide and idempotent; never lowers the spool size."""
    from starlette.formparsers import MultiPartParser

    # A multipart body is a little larger than the file it carries: 1 MB of room for its framing.
    limit = int((float(max_upload_mb) + 1) * 1024 * 1024)
    if MultiPartParser.spool_max_size < limit:
        MultiPartParser.spool_max_size = limit




def local_dataset_spec(spec: str | None) -> str:
    """``spec`` when it names a dataset on this machine that the page may read (``prefix:PATH`` with an
    existing, allowed path), else "" (hub specs such as ``imdb`` would need the network)."""
    raw = dataset_spec_path(spec)
    return spec if raw and is_allowed_path(raw) and Path(raw).expanduser().exists() else ""
