"""All six dynamics definitions for one run: their results together, as plain numbers (for
reports and findings) and as per-frame series (for plots across runs)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.dynamics.collapse import Collapse, collapse
from harness.dynamics.flux import Flux, flux
from harness.dynamics.freeze import Freeze, freeze
from harness.dynamics.inhale import Inhale, inhale
from harness.dynamics.outward import OutwardShare, outward_share
from harness.dynamics.stream import DEFAULT_CHUNK, Source, opened
from harness.dynamics.supernova import SupernovaEnd, supernova_end


@dataclass
class Dynamics:
    path: str
    tied: bool
    tensor: str
    supernova: SupernovaEnd
    freeze: Freeze
    flux: Flux
    inhale: Inhale
    collapse: Collapse
    outward: OutwardShare

    @property
    def steps(self) -> np.ndarray:
        return self.supernova.steps

    def to_dict(self) -> dict:
        """{"path", "frames", "last_step", "tied", "tensor", and each definition's to_dict() by its name}."""
        return {"path": self.path, "frames": len(self.steps), "last_step": int(self.steps[-1]), "tied": self.tied,
                "tensor": self.tensor,
                **{name: getattr(self, name).to_dict()
                   for name in ("supernova", "freeze", "flux", "inhale", "collapse", "outward")}}

    def series(self) -> dict[str, np.ndarray]:
        """Per-frame series (T,) each, for plots: "steps" and "<definition>/<series>"."""
        return {"steps": self.steps, "supernova/speed": self.supernova.speed,
                "freeze/moving_fraction": self.freeze.moving_fraction, "flux/inside": self.flux.inside,
                "flux/entries": self.flux.entries, "flux/exits": self.flux.exits, "flux/radius": self.flux.radius,
                "inhale/radius": self.inhale.radius, "outward/share": self.outward.series,
                "outward/moving": self.outward.moving}


def measure_dynamics(path: Source, tensor: str = "W", chunk: int = DEFAULT_CHUNK) -> Dynamics:
    """Every definition with its defaults, for the dead tokens of `tensor`. Reads the file six
    times, each a stream of `chunk` frames."""
    with opened(path) as traj:
        return Dynamics(str(traj.path), traj.tied, tensor, supernova_end(traj, tensor, chunk=chunk),
                        freeze(traj, tensor, chunk=chunk), flux(traj, tensor, chunk=chunk),
                        inhale(traj, tensor, chunk=chunk), collapse(traj, tensor),
                        outward_share(traj, tensor, chunk=chunk))


def dynamics_summary(path: Source, tensor: str = "W", chunk: int = DEFAULT_CHUNK) -> dict:
    """All six definitions as plain numbers: `measure_dynamics(...).to_dict()`, JSON-ready."""
    return measure_dynamics(path, tensor, chunk).to_dict()
