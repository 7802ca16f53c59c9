"""All six dynamics definitions for one run, as plain numbers (for reports and findings)."""

from __future__ import annotations

from harness.dynamics.collapse import collapse
from harness.dynamics.flux import flux
from harness.dynamics.freeze import freeze
from harness.dynamics.inhale import inhale
from harness.dynamics.outward import outward_share
from harness.dynamics.stream import DEFAULT_CHUNK, Source, opened
from harness.dynamics.supernova import supernova_end


def dynamics_summary(path: Source, tensor: str = "W", chunk: int = DEFAULT_CHUNK) -> dict:
    """{"path", "frames", "last_step", "tied", "tensor", "supernova", "freeze", "flux", "inhale",
    "collapse", "outward"}: each definition's `to_dict()` with its defaults, for the dead tokens
    of `tensor`. Reads the file six times, each a stream."""
    with opened(path) as traj:
        return {"path": str(traj.path), "frames": len(traj), "last_step": int(traj.steps[-1]), "tied": traj.tied,
                "tensor": tensor,
                "supernova": supernova_end(traj, tensor, chunk=chunk).to_dict(),
                "freeze": freeze(traj, tensor, chunk=chunk).to_dict(),
                "flux": flux(traj, tensor, chunk=chunk).to_dict(),
                "inhale": inhale(traj, tensor, chunk=chunk).to_dict(),
                "collapse": collapse(traj, tensor).to_dict(),
                "outward": outward_share(traj, tensor, chunk=chunk).to_dict()}
