"""An exponential moving average (EMA) of a model's trained weights, the weights a run is evaluated with.

What it is: ``WeightAverage(model, decay)`` keeps, beside the weights the optimiser moves, their
running average ``avg <- d * avg + (1 - d) * w`` after every optimiser step, with the warm-up
``d = min(decay, (1 + n) / (10 + n))`` after ``n`` updates (so that the first steps, far from the
final weights, fade quickly). It averages every trained parameter and every floating-point buffer
(batch-norm running statistics); integer buffers (batch-norm step counters) take the current value.
Frozen parameters never change and are not copied.

Why: accuracy on data unlike the training images (zero-shot on real MNIST digits after training on
rendered ones) varies much more from seed to seed than the training loss does; averaging the
weights along the end of the trajectory is a known remedy for that variance (Izmailov et al. 2018,
"Averaging Weights Leads to Wider Optima and Better Generalization"; Arpit et al. 2022, "Ensemble
of Averages: Improving Model Selection and Boosting Performance in Domain Generalization").
``train.ema_decay`` (0 = off) switches it on; docs/decisions.md says how the embedded profile's
value was chosen.

What it is not: a second model. ``fit`` trains the raw weights; the average only reads them, so a
run with and without averaging follows the same trajectory, step for step. The checkpoint keeps
both (``"model"`` raw, ``"ema"`` the average), a resumed run continues both exactly, and
``runs.load_trained`` returns the averaged weights when the run kept them.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

__all__ = ["WeightAverage", "averaged_state_dict"]


class WeightAverage:
    """The running average of ``model``'s trained parameters and floating-point buffers."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self.updates = 0
        live = self._live(model)
        saved = model.state_dict().keys()  # persistent tensors only: what a checkpoint holds
        self.names = [n for n in live if n in saved]
        self.shadow = {n: live[n].detach().clone() for n in self.names}
        self._bound: tuple | None = None  # (model, averaged tensors, live tensors, copied pairs) of the last update

    @staticmethod
    def _live(model: nn.Module) -> dict[str, torch.Tensor]:
        """The tensors the average follows, by state-dict name (the model's own storage)."""
        params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        buffers = {n: b for n, b in model.named_buffers() if b is not None}
        return {**params, **buffers}

    def current_decay(self) -> float:
        return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the model's current weights into the average (call after each optimiser step).

        The model's tensors are looked up once and then read in place, as optimisers update them;
        moving the model (``.to(...)``) after the first update needs a new ``WeightAverage``."""
        self.updates += 1
        if self._bound is None or self._bound[0] is not model:  # look the tensors up once per model
            live = self._live(model)
            floats = [n for n in self.names if self.shadow[n].is_floating_point()]
            others = [n for n in self.names if not self.shadow[n].is_floating_point()]
            self._bound = (model, [self.shadow[n] for n in floats], [live[n].detach() for n in floats],
                           [(self.shadow[n], live[n]) for n in others])
        _, averaged, current, copied = self._bound
        torch._foreach_lerp_(averaged, current, 1.0 - self.current_decay())
        for avg, now in copied:
            avg.copy_(now)

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "updates": self.updates, "shadow": dict(self.shadow)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = sorted(set(self.names) - set(state["shadow"]))
        if missing:
            raise KeyError(f"the saved weight average lacks {missing[:5]}; it was kept for another model")
        self.updates = int(state["updates"])
        for n in self.names:
            self.shadow[n].copy_(state["shadow"][n])

    @contextlib.contextmanager
    def applied(self, model: nn.Module):
        """Inside the block ``model`` holds the averaged weights; the trained ones are put back after."""
        live = self._live(model)
        kept = {n: live[n].detach().clone() for n in self.names}
        with torch.no_grad():
            for n in self.names:
                live[n].copy_(self.shadow[n])
        try:
            yield model
        finally:
            with torch.no_grad():
                for n in self.names:
                    live[n].copy_(kept[n])


def averaged_state_dict(model_state: dict[str, torch.Tensor], ema_state: dict[str, Any] | None) -> dict[str, torch.Tensor]:
    """A checkpoint's model state with the averaged tensors in place of the trained ones (as is without one)."""
    if not ema_state:
        return model_state
    return {**model_state, **ema_state["shadow"]}
