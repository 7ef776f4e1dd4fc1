"""What every view of the page is given (``PageContext``): the task, the device and the two models as the sidebar
picked them, and what of the pair fits together; and what a view is (``View``). No Streamlit here."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from dashboard.checkpoints import CheckpointInfo, PairCheck, range_warning
from dashboard.inputs import InputItem
from dashboard.render.style import ROLE_COLOURS

if TYPE_CHECKING:
    import torch


@dataclass
class ModelSlot:
    """One of the two models: the checkpoint picked for a role, the model loaded from it (None when none is picked
    or it failed to load: ``error`` says why), the name the page calls it, the ratios it was trained at (None: a
    CLS model, or none loaded) and the ratio the page reads it at."""

    role: str
    path: str
    model: object | None
    error: str | None
    name: str
    span: tuple[float, float] | None
    ratio: float

    @property
    def colour(self) -> str:
        return ROLE_COLOURS[self.role]

    @property
    def range_warning(self) -> str | None:
        """The warning that this model is read away from the ratios it was trained at, or None."""
        return range_warning(self.role, self.ratio, self.span)


@dataclass
class PageContext:
    """The page's state for one run, as the sidebar and the model cards set it."""

    task: str
    device: "torch.device"
    infos: list[CheckpointInfo]  # the checkpoints of this task found under the checkpoints folder
    teacher: ModelSlot
    student: ModelSlot
    linked: bool = True  # one ratio for both models
    check: PairCheck | None = None  # what of the pair fits together (None until both are loaded)
    # What Compare read (its first view draws first): the summary can summarise it, other views open into it.
    inputs: list[InputItem] = field(default_factory=list)

    @property
    def slots(self) -> tuple[ModelSlot, ModelSlot]:
        return self.teacher, self.student

    @property
    def pair_key(self) -> tuple[str, str]:
        """The paths of the pair: what results computed for another pair are told apart by."""
        return self.teacher.path, self.student.path

    def stamp(self) -> dict:
        """What a stored result records of the page it was computed on: the pair and the ratios."""
        return {"pair": self.pair_key, "ratios": self.ratios}

    def made_for(self, state: dict) -> bool:
        """Whether a result stored with its ``stamp`` was computed for the pair and ratios the page has now."""
        return state["pair"] == self.pair_key and state["ratios"] == self.ratios

    @property
    def ratios(self) -> dict[str, float]:
        """role -> the ratio the page reads that model at."""
        return {slot.role: slot.ratio for slot in self.slots}

    @property
    def ready(self) -> bool:
        """Whether both models are loaded and fit together enough to be compared at all."""
        return all(slot.model is not None for slot in self.slots) and self.check is not None and not self.check.fatal

    @property
    def models(self) -> dict[str, object]:
        return {slot.role: slot.model for slot in self.slots}


def ratios_phrase(ratios: dict[str, float]) -> str:
    """"ratio 0.1" when both models are read at one ratio, else "ratios 0.6 (teacher) and 0.1 (student)"."""
    if ratios["teacher"] == ratios["student"]:
        return f"ratio {ratios['teacher']:g}"
    return f"ratios {ratios['teacher']:g} (teacher) and {ratios['student']:g} (student)"


@dataclass(frozen=True)
class View:
    """One tab of the page: its label, and the function that draws it (given the context, and whether its tab is
    the open one: a view may skip expensive work while hidden)."""

    label: str
    draw: Callable[[PageContext, bool], None]
