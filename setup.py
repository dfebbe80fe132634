"""spidarknet: single-particle hit finding in XFEL diffraction data with Darknet YOLO."""

from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

here = Path(__file__).parent
templates = sorted(str(p.relative_to(here)) for p in (here / "cfg").glob("*.cfg"))

#: the engine's build recipe, shipped in the package so that 'spidarknet build-engine' (and
#: 'train' on first need) can build darknet with our patches where pip put spidarknet
ENGINE_RECIPE = ["mk/darknet.mk", "tools/darknet-source.sh", "tools/darknet-prepare.sh",
                 *sorted(str(p.relative_to(here)) for p in (here / "patches").glob("*.patch"))]


class BuildWithEngineRecipe(build_py):
    """build_py that also copies the engine's recipe into spidarknet/engine/darknet_build/."""

    def run(self):
        super().run()
        target = Path(self.build_lib) / "spidarknet" / "engine" / "darknet_build"
        for name in ENGINE_RECIPE:
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            self.copy_file(str(here / name), str(target / name))

setup(
    name="spidarknet",
    version="0.1.0",
    description="Find single-particle hits in XFEL diffraction frames with the Darknet YOLO engine",
    long_description=(here / "README.md").read_text() if (here / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["spidarknet", "spidarknet.*"]),
    # the built-in model (make model): weights and their card
    package_data={"spidarknet": ["models/*.weights", "models/*.json", "templates/*.html"]},
    install_requires=[
        "numpy>=1.22",
        # the sizing fit's 1-D optimiser (scipy.optimize) and FFTs (scipy.fft)
        "scipy>=1.8",
        # the sizing fit's compiled loops (spidarknet/sizing_kernels.py)
        "numba>=0.57",
        "h5py>=3.6",
        # OpenCV 5 removed the Darknet importer (cv2.dnn.readNetFromDarknet)
        "opencv-python-headless>=4.8,<5",
        "pillow>=9",
        "tqdm>=4.60",
        # figures (report, reconstructions) and the HTML pages' templates
        "matplotlib>=3.5",
        "jinja2>=3",
        # HDF5 filters facilities use (bitshuffle-LZ4, Blosc, Zstd, ...) for h5py
        "hdf5plugin>=4",
        # ISA-L's inflate for gzip-compressed frames (spidarknet/frames/source.py: the same bytes as zlib's, faster)
        "isal>=1.0",
        # the selection learnt from the user's labels (logistic regression, cross-validation, k-means)
        "scikit-learn>=1.3",
        # the monitor and labelling pages: an ASGI framework and server (server-sent events)
        "starlette>=0.37",
        "uvicorn>=0.29",
    ],
    # the page tests drive Debian's Chromium (make system-deps) with Playwright: no browser download;
    # wheel: the sdist install test builds spidarknet without build isolation (no network)
    extras_require={"test": ["pytest>=7", "mpi4py>=3.1", "extra-data>=1.20", "extra-geom>=1.12", "playwright>=1.40",
                             "wheel"],
                    "mpi": ["mpi4py>=3.1"],
                    # European XFEL runs (docs/euxfel.md): EXtra-data reads them, EXtra-geom places the modules
                    "euxfel": ["extra-data>=1.20", "extra-geom>=1.12"]},
    data_files=[("share/spidarknet/cfg", templates)],
    entry_points={"console_scripts": ["spidarknet=spidarknet.cli:console_main"]},
    cmdclass={"build_py": BuildWithEngineRecipe},
)
