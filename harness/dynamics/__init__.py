"""Operational definitions of the dead-token dynamics the seed documents ask about, one
function per definition, each over a trajectory file, streamed in chunks of frames
(docs/dynamics.md states each definition in one sentence, with its parameters).

    from harness.dynamics import supernova_end, freeze, flux, inhale, collapse, outward_share
    supernova_end("runs/flannel_1.h5").end_step      # -> int | None
    dynamics_summary("runs/flannel_1.h5")            # all six as a JSON-ready dict
    measure_dynamics("runs/flannel_1.h5").series()   # their per-frame series, for plots

Each returns a small dataclass with `to_dict()` (plain numbers for JSON); the per-frame series
for plots ride along as numpy arrays (`steps`, `speed`, `inside`, `radius`, ...), outside `to_dict()`.
The checks and sweep aggregates that state answers with them: harness.dynamics.checks.
"""

from harness.dynamics.collapse import Collapse, collapse
from harness.dynamics.flux import Flux, flux
from harness.dynamics.freeze import Freeze, freeze
from harness.dynamics.inhale import Inhale, inhale, inhale_of
from harness.dynamics.outward import OutwardShare, outward_share
from harness.dynamics.summary import Dynamics, dynamics_summary, measure_dynamics
from harness.dynamics.supernova import SupernovaEnd, supernova_end

__all__ = ["Collapse", "Dynamics", "Flux", "Freeze", "Inhale", "OutwardShare", "SupernovaEnd", "collapse",
           "dynamics_summary", "flux", "freeze", "inhale", "inhale_of", "measure_dynamics", "outward_share",
           "supernova_end"]
