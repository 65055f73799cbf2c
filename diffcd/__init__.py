"""diffcd: fit neural implicit surfaces to point clouds with DiffCD, IGR, Neural-Pull and SIREN, or
reconstruct a mesh with Screened Poisson."""

from diffcd._version import __version__
from diffcd.errors import (
    CheckpointError,
    ConfigError,
    DiffCDError,
    LimitError,
    TimeLimitError,
    DiffCDWarning,
    MeshError,
    NoSurfaceError,
    PointCloudError,
)
from diffcd.batch import ShapeEvent, fit_many
from diffcd.export import export_sdf, load_sdf
from diffcd.fit import FitConfig, FitEvent, FitResult, Fitter, ScheduleConfig, TrainState, fit, fit_sdf
from diffcd.io import Normalization, PointCloud, load_mesh, load_point_cloud, points_from_array
from diffcd.methods import ALL_METHODS, METHODS, RECONSTRUCTORS, DiffCDConfig, IGRConfig, NeuralPullConfig, SIRENConfig
from diffcd.poisson import PoissonConfig
from diffcd.networks import NetworkConfig
from diffcd.presets import DEFAULT_PRESET, PRESETS, make_config
from diffcd.sdf import FittedSDF

__all__ = [
    "__version__", "CheckpointError", "ConfigError", "DiffCDError", "LimitError", "TimeLimitError", "DiffCDWarning", "MeshError",
    "NoSurfaceError", "PointCloudError", "export_sdf", "load_sdf", "FitConfig", "FitEvent",
    "FitResult", "Fitter", "ScheduleConfig", "TrainState", "fit", "fit_sdf", "Normalization", "PointCloud",
    "load_mesh", "load_point_cloud", "points_from_array", "METHODS", "ALL_METHODS", "RECONSTRUCTORS",
    "PoissonConfig", "DiffCDConfig", "IGRConfig",
    "NeuralPullConfig", "SIRENConfig", "NetworkConfig", "DEFAULT_PRESET", "PRESETS", "make_config",
    "FittedSDF", "ShapeEvent", "fit_many",
]
