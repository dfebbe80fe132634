"""Figures and the page of a reconstruction (``spidarknet reconstruct``).

:func:`slices_figure`: the three central slices of the 3D intensity, log colour scale,
q axes in nm⁻¹.  :func:`convergence_figure`: log-likelihood, mutual information and rms
change per iteration.  :func:`write_page`: ``report.html`` from the Jinja2 template
``spidarknet/templates/reconstruct.html``.  Matplotlib is used through its Agg canvas
(no pyplot, no global backend).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"


def _figure(width_in: float, height_in: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width_in, height_in), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def slices_figure(volume: np.ndarray, q_per_voxel_inv_nm: float, path: str | Path, title: str = "") -> None:
    """Central slices ``qx = 0``, ``qy = 0``, ``qz = 0`` (Dragonfly's axes) of ``volume``."""
    from matplotlib.colors import LogNorm
    n = volume.shape[0]
    c = n // 2
    half = c * q_per_voxel_inv_nm
    extent = (-half, (n - 1 - c) * q_per_voxel_inv_nm, -half, (n - 1 - c) * q_per_voxel_inv_nm)
    cuts = [(volume[c, :, :], "x", "z", "y"), (volume[:, c, :], "y", "z", "x"), (volume[:, :, c], "z", "y", "x")]
    positive = volume[volume > 0]
    vmax = float(positive.max()) if positive.size else 1.0
    vmin = float(np.percentile(positive, 1)) if positive.size else 1e-3
    vmin = min(max(vmin, vmax * 1e-7), vmax * 0.5)
    fig = _figure(13, 4.2)
    fig.subplots_adjust(left=0.06, right=0.86, wspace=0.35, bottom=0.14)
    image = None
    for k, (plane, name, xlabel, ylabel) in enumerate(cuts):
        ax = fig.add_subplot(1, 3, k + 1)
        image = ax.imshow(np.where(plane > 0, plane, vmin), origin="lower", extent=extent, cmap="viridis",
                          norm=LogNorm(vmin=vmin, vmax=vmax), interpolation="nearest")
        ax.set_title(f"$q_{name} = 0$")
        ax.set_xlabel(f"$q_{xlabel}$ (nm⁻¹)")
        ax.set_ylabel(f"$q_{ylabel}$ (nm⁻¹)")
    if image is not None:
        fig.colorbar(image, cax=fig.add_axes((0.89, 0.14, 0.015, 0.72)),
                     label="intensity (photons per pixel, log scale)")
    if title:
        fig.suptitle(title)
    fig.savefig(path)


def convergence_figure(rows, path: str | Path, title: str = "") -> None:
    """Per-iteration log-likelihood, mutual information and rms change (Dragonfly's log rows:
    iteration, seconds, rms_change, info_rate, log_likelihood, num_rot, beta)."""
    data = np.asarray(rows, dtype=np.float64).reshape(-1, 7)
    it = data[:, 0]
    fig = _figure(12, 3.6)
    panels = [(4, "log-likelihood", "linear"), (3, "mutual information", "linear"),
              (2, "rms change of the model", "log")]
    for k, (col, label, scale) in enumerate(panels):
        ax = fig.add_subplot(1, 3, k + 1)
        ax.plot(it, data[:, col], marker="o", markersize=3)
        ax.set_xlabel("iteration")
        ax.set_ylabel(label)
        if scale == "log" and np.all(data[:, col] > 0):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)


def write_page(path: str | Path, summary: dict) -> None:
    """``report.html`` showing the figures and the numbers of ``summary`` (reconstruct.json)."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html"]))
    html = env.get_template("reconstruct.html").render(s=summary)
    Path(path).write_text(html)
