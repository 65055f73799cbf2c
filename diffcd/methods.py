"""The method registries: the losses that train a network, and the classical reconstructors.

`METHODS` holds one `MethodSpec` per loss (config dataclass + data set-up + loss); the training
engine (diffcd.fit, diffcd.batch) reads only it. `RECONSTRUCTORS` holds the methods that turn a
cloud into a mesh without a network (Screened Poisson). `ALL_METHODS` is both, in the order a
chooser lists them: the CLI, the app, the API and the benchmarks offer its names and ask
`is_reconstructor` which path to take. Adding a method is one entry in one of the two. A method whose data follows the fit (DiffCD's surface seeds) declares a `DataRefresh`
hook, which the fit loop runs on its schedule. Defaults are the paper's (method.md §4).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from diffcd import losses, meshing, nearest, poisson, sampling
from diffcd.errors import MeshError, NoSurfaceError
from diffcd.metrics import sample_triangles

Data = dict[str, jax.Array]
"""Per-fit arrays a loss reads (cloud, sigma, method extras); shapes fixed for the whole fit.
Padded data (diffcd.batch) adds "point_count" and, for Neural-Pull, "pair_count": the real
lengths of the padded arrays, which the draws respect."""


@dataclasses.dataclass(frozen=True)
class IGRConfig:
    """IGR: |f| on the cloud + eikonal regularisation (Gropp et al. 2020)."""

    eikonal_weight: float = 0.1
    """λ, weight of the eikonal term on local and global samples."""
    area_weight: float = 0.0
    """μ, weight of the area term exp(-α|f|) on uniform samples (0 = off)."""
    area_alpha: float = 100.0
    """α of the area term."""


@dataclasses.dataclass(frozen=True)
class SIRENConfig(IGRConfig):
    """The paper's "SIREN" rows: IGR plus the area (off-surface) term on the softplus MLP."""

    area_weight: float = 0.033
    """μ: the paper uses 0.033 or 0.33."""


@dataclasses.dataclass(frozen=True)
class NeuralPullConfig:
    """Neural-Pull: pull Gaussian queries onto the surface along ∇f (Ma et al. 2021)."""

    samples_per_point: int = 50
    """Fixed queries drawn around every cloud point at the start."""
    max_pairs: int = 5_000_000
    """Cap on the fixed (query, target) pairs: large clouds get fewer queries per point."""
    eikonal_weight: float = 0.0
    """Optional eikonal term on the pulled queries (0 in the paper)."""


@dataclasses.dataclass(frozen=True)
class DiffCDConfig:
    """DiffCD: the symmetric Chamfer distance between the cloud and the zero level set."""

    eikonal_weight: float = 0.1
    """λ; the paper uses 0.5 at medium and 1.0 at maximum noise."""
    area_weight: float = 0.0
    """μ of the optional area term (0 in the paper)."""
    area_alpha: float = 100.0
    """α of the area term."""
    seed_count: int = 30_000
    """Surface seeds drawn on the marching-cubes mesh of the current f at each refresh."""
    seed_refresh_every: int = 1000
    """Steps between seed refreshes (and at step 0)."""
    seed_mesh_resolution: int = 256
    """Grid resolution of the seed mesh."""
    projection_steps: int = 4
    """Newton-like projection steps that move each seed onto the level set."""
    valid_threshold: float = 1e-3
    """A projected point counts only where |f(s)| is below this."""
    nn_candidates: int = 32
    """Cloud points kept per seed for the in-graph nearest-neighbour search (see sampling)."""
    nn_search: str = "exact"
    """"exact": every valid surface point's target is its nearest cloud point (diffcd.nearest);
    "candidates": the nearest of its seed's candidates only, exact only where certified (kept
    for A/B comparisons)."""
    def __post_init__(self) -> None:
        from diffcd.errors import ConfigError

        if self.nn_search not in NN_SEARCHES:
            raise ConfigError(f"nn_search must be one of {', '.join(NN_SEARCHES)}, not {self.nn_search!r}.")


NN_SEARCHES = ("exact", "candidates")


MethodConfig = Any


@dataclasses.dataclass(frozen=True)
class DataRefresh:
    """A method hook: data arrays recomputed from the current f during a fit.

    Every `every(config)` steps (and at a fit's first step) the fit loop evaluates f on the
    cube grid of `resolution(config)`³ points and calls `from_grid`; the arrays it returns
    replace those of the same names in the fit's data (same shapes, so nothing recompiles).
    Whether the loop waits for it or trains on meanwhile is the fit's choice
    (FitConfig.overlap_seed_refresh), not the method's.
    """

    every: Callable[[Any], int]
    """config -> steps between refreshes."""
    resolution: Callable[[Any], int]
    """config -> grid resolution of f."""
    from_grid: Callable[..., tuple[dict[str, np.ndarray], bool]]
    """(values, points, tree, config, seed) -> (arrays, fell_back): `values` is f on the grid,
    `points` and `tree` the fit's cloud and its KD-tree, `seed` a NumPy seed for this refresh.
    fell_back: the grid gave no usable surface and the arrays came from elsewhere. Runs on the
    host, possibly in a background thread: it must not write shared state."""


@dataclasses.dataclass(frozen=True)
class MethodSpec:
    """How a method sets up its data and computes its loss."""

    name: str
    title: str
    summary: str
    config_type: type
    prepare: Callable[[np.ndarray, np.ndarray, Any, int], dict[str, np.ndarray]]
    """(points, sigma, config, seed, tree=None) -> extra per-fit arrays, computed once on the
    host. `tree` is the cloud's KD-tree when the caller has it (saves building it again)."""
    loss: Callable[..., tuple[jax.Array, dict[str, jax.Array]]]
    """(f, params, data, config, weights, key, batch_size) -> (loss, aux), pure and jit-able."""
    refresh: DataRefresh | None = None
    """Data the fit loop recomputes from the current f (DiffCD's surface seeds); None: none."""

    @property
    def uses_surface_seeds(self) -> bool:
        return self.refresh is not None


def _bind(apply: Callable, params: Any) -> Callable[[jax.Array], jax.Array]:
    return lambda x: apply(params, x)


def _query_batch(key: jax.Array, data: Data, batch_size: int) -> tuple[jax.Array, jax.Array]:
    """Cloud batch B and one local Gaussian sample per batch point."""
    k_batch, k_local = jax.random.split(key)
    idx = sampling.draw_batch_indices(
        k_batch, data["points"].shape[0], batch_size, data.get("point_count")
    )
    batch = data["points"][idx]
    return batch, sampling.local_samples(k_local, batch, data["sigma"][idx])


def _area_term(f, key, weights, config, count) -> jax.Array:
    if config.area_weight == 0:
        return jnp.zeros(())
    values = f(sampling.uniform_samples(key, count))
    return jnp.mean(losses.area(values, alpha=weights["area_alpha"]))


def _no_extra_data(points, sigma, config, seed, tree=None) -> dict[str, np.ndarray]:
    return {}


def igr_loss(apply, params, data, config, weights, key, batch_size):
    f = _bind(apply, params)
    k_query, k_global, k_area = jax.random.split(key, 3)
    batch, local = _query_batch(k_query, data, batch_size)
    regular = jnp.concatenate([local, sampling.uniform_samples(k_global, max(1, len(local) // 8))])
    _, gradients = losses.values_and_gradients(f, regular)
    on_surface = jnp.mean(jnp.abs(f(batch)))
    eikonal = jnp.mean(losses.eikonal(gradients))
    area = _area_term(f, k_area, weights, config, batch_size)
    total = on_surface + weights["eikonal_weight"] * eikonal + weights["area_weight"] * area
    return total, {"point_to_surface": on_surface, "eikonal": eikonal, "area": area}


def neural_pull_prepare(points, sigma, config, seed, tree=None):
    per_point = max(1, min(config.samples_per_point, config.max_pairs // len(points)))
    queries, targets = sampling.neural_pull_pairs(points, sigma, per_point=per_point, seed=seed, tree=tree)
    return {"pull_queries": queries, "pull_targets": targets}


def neural_pull_loss(apply, params, data, config, weights, key, batch_size):
    f = _bind(apply, params)
    # Pairs are drawn with replacement: a permutation of N x 50 pairs per step would cost more
    # than the step itself.
    pairs = data.get("pair_count", data["pull_queries"].shape[0])  # padded (diffcd.batch) or not
    idx = jax.random.randint(key, (batch_size,), 0, pairs)
    queries, targets = data["pull_queries"][idx], data["pull_targets"][idx]
    pull = jnp.mean(losses.safe_norm(targets - losses.pulled_points(f, queries)))
    total = pull
    eikonal = jnp.zeros(())
    if config.eikonal_weight != 0:
        _, gradients = losses.values_and_gradients(f, queries)
        eikonal = jnp.mean(losses.eikonal(gradients))
        total = total + weights["eikonal_weight"] * eikonal
    return total, {"pull": pull, "eikonal": eikonal}


def diffcd_prepare(points, sigma, config, seed, tree=None):
    """Placeholder seeds (the cloud itself) of the right shapes; the fit loop refreshes them.

    With exact targets, also the arrays of diffcd.nearest's search.
    """
    rng = np.random.default_rng(seed)
    seeds = points[rng.choice(len(points), config.seed_count, replace=len(points) < config.seed_count)]
    index = nearest.build_index(points) if config.nn_search == "exact" else {}
    return {
        "seeds": seeds.astype(np.float32),
        "seed_candidates": np.zeros((config.seed_count, min(config.nn_candidates, len(points))), np.int32),
        "seed_radius": np.zeros((config.seed_count,), np.float32),
        **index,
    }


def diffcd_surface_seeds(values, points, tree, config, seed) -> tuple[dict[str, np.ndarray], bool]:
    """DiffCD's seed refresh (method.md §4, step 1) from f on a grid: mesh its zero level set,
    draw area-uniform seeds on the mesh and find each seed's candidate nearest cloud points."""
    fell_back = False
    try:
        vertices, faces = meshing.marching_cubes(values)
        seeds = sample_triangles(vertices[faces], config.seed_count, seed, "seed mesh")[0]
    except (NoSurfaceError, MeshError):
        # Without a level set, start from the cloud itself: the projection moves these seeds
        # onto whatever surface appears.
        fell_back = True
        rng = np.random.default_rng(seed)
        pick = rng.choice(len(points), config.seed_count, replace=len(points) < config.seed_count)
        seeds = points[pick]
    seeds = seeds.astype(np.float32)
    candidates, radius = sampling.nearest_candidates(tree, seeds, config.nn_candidates)
    return {"seeds": seeds, "seed_candidates": candidates, "seed_radius": radius}, fell_back


def surface_to_cloud_targets(
    surface: jax.Array, seeds: jax.Array, candidates: jax.Array, radius: jax.Array, points: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Nearest cloud point of each surface point among its seed's candidates, its distance and a
    certificate.

    The certificate is true where the candidate set provably holds the exact nearest neighbour
    (the best candidate is closer than any point outside the seed's candidate ball).
    """
    cloud = points[candidates]  # (S, K, 3)
    distances = losses.safe_norm(surface[:, None, :] - cloud)
    best = jnp.argmin(distances, axis=1)
    targets = jnp.take_along_axis(cloud, best[:, None, None], axis=1)[:, 0]
    distance = jnp.min(distances, axis=1)
    certified = distance <= radius - losses.safe_norm(surface - seeds)
    return targets, distance, certified


def diffcd_loss(apply, params, data, config, weights, key, batch_size):
    f = _bind(apply, params)
    # The projection and the validity pass run in true float32 whatever the fit's precision
    # (FitConfig.precision): TF32 errors reach the 1e-3 validity threshold.
    exact = getattr(apply, "exact", apply)
    frozen = _bind(exact, jax.lax.stop_gradient(params))
    k_query, k_global, k_seeds, k_area = jax.random.split(key, 4)

    batch, local = _query_batch(k_query, data, batch_size)
    queries = jnp.concatenate(
        [batch, local, sampling.uniform_samples(k_global, max(1, len(local) // 8))]
    )
    values, gradients = losses.values_and_gradients(f, queries)
    point_to_surface = jnp.mean(jnp.abs(values[: len(batch)]))
    eikonal = jnp.mean(losses.eikonal(gradients))

    seed_count = data["seeds"].shape[0]
    pick = sampling.draw_batch_indices(k_seeds, seed_count, batch_size)
    seeds = data["seeds"][pick]
    surface = jax.lax.stop_gradient(
        losses.project_to_surface(frozen, seeds, steps=config.projection_steps)
    )
    # One pass at the projected points gives the validity test, ∇ₓf for the implicit gradient
    # and f(θ, s), through which alone the θ-gradient flows.
    surface_values, surface_gradients = losses.values_and_gradients(_bind(exact, params), surface)
    valid = jnp.abs(jax.lax.stop_gradient(surface_values)) < weights["valid_threshold"]
    targets, distance, certified = surface_to_cloud_targets(
        surface, seeds, data["seed_candidates"][pick], data["seed_radius"][pick], data["points"]
    )
    valid_count = jnp.maximum(jnp.sum(valid), 1)
    if config.nn_search == "exact":
        index = {name: value for name, value in data.items() if name.startswith("nn_")}
        targets, searched = nearest.exact_targets(surface, targets, distance, certified, valid, index)
        exact = certified | searched["tree"] | searched["brute"]
        tree, brute = searched["tree"], searched["brute"]
    else:
        exact, tree, brute = certified, jnp.zeros_like(certified), jnp.zeros_like(certified)

    def mean_distance_to_cloud(s):
        return jnp.sum(jnp.where(valid, losses.safe_norm(s - targets), 0.0)) / valid_count

    surface_to_point = losses.implicit_surface_loss(
        surface_values, surface, surface_gradients, mean_distance_to_cloud
    )
    area = _area_term(f, k_area, weights, config, batch_size)
    total = (
        0.5 * (point_to_surface + surface_to_point)
        + weights["eikonal_weight"] * eikonal
        + weights["area_weight"] * area
    )
    aux = {
        "point_to_surface": point_to_surface,
        "surface_to_point": surface_to_point,
        "eikonal": eikonal,
        "area": area,
        "valid_surface_fraction": jnp.mean(valid),
        # Shares of the valid surface points: answered by the seed certificate, proved exact
        # (1 with nn_search="exact"), and answered by the box hierarchy and by brute force (the
        # two slow stages of diffcd.nearest).
        "nn_certified_fraction": jnp.sum(valid & certified) / valid_count,
        "nn_exact_fraction": jnp.sum(valid & exact) / valid_count,
        "nn_tree_fraction": jnp.sum(valid & tree) / valid_count,
        "nn_brute_force_fraction": jnp.sum(valid & brute) / valid_count,
    }
    return total, aux


METHODS: dict[str, MethodSpec] = {
    "diffcd": MethodSpec(
        name="diffcd",
        title="DiffCD",
        summary="Symmetric Chamfer distance: the cloud is near the surface and the surface near the cloud.",
        config_type=DiffCDConfig,
        prepare=diffcd_prepare,
        loss=diffcd_loss,
        refresh=DataRefresh(every=lambda config: config.seed_refresh_every,
                            resolution=lambda config: config.seed_mesh_resolution,
                            from_grid=diffcd_surface_seeds),
    ),
    "igr": MethodSpec(
        name="igr",
        title="IGR",
        summary="|f| on the cloud + eikonal term: one-sided, may leave spurious surface.",
        config_type=IGRConfig,
        prepare=_no_extra_data,
        loss=igr_loss,
    ),
    "neural-pull": MethodSpec(
        name="neural-pull",
        title="Neural-Pull",
        summary="Pull nearby queries onto the surface along the SDF gradient.",
        config_type=NeuralPullConfig,
        prepare=neural_pull_prepare,
        loss=neural_pull_loss,
    ),
    "siren": MethodSpec(
        name="siren",
        title="SIREN",
        summary="IGR + the area (off-surface) term: removes spurious surface but over-smooths.",
        config_type=SIRENConfig,
        prepare=_no_extra_data,
        loss=igr_loss,
    ),
}


@dataclasses.dataclass(frozen=True)
class ReconstructorSpec:
    """A classical method: a cloud in, a mesh out, with no network, loss or training steps."""

    name: str
    title: str
    summary: str
    config_type: type
    reconstruct: Callable[..., Any]
    """(points, normals=None, config, *, bounds..., should_stop=None, progress=None) -> a result
    with `.mesh` (input coordinates) and `.summary` (see diffcd.poisson.reconstruct)."""


RECONSTRUCTORS: dict[str, ReconstructorSpec] = {
    "poisson": ReconstructorSpec(
        name="poisson",
        title="Screened Poisson",
        summary="Classical (Kazhdan & Hoppe 2013, Open3D): a mesh in seconds, no network to export.",
        config_type=poisson.PoissonConfig,
        reconstruct=poisson.reconstruct,
    ),
}

ALL_METHODS: dict[str, MethodSpec | ReconstructorSpec] = {**METHODS, **RECONSTRUCTORS}
"""Every method a user can choose, by name: what method choosers list (title, summary)."""


def is_reconstructor(name: str) -> bool:
    """Whether `name` is a classical reconstructor (no network) rather than a training loss."""
    return name in RECONSTRUCTORS


def get_method(name: str) -> MethodSpec:
    """The training method (loss) called `name`; ConfigError for a reconstructor or unknown name."""
    from diffcd.errors import ConfigError

    try:
        return METHODS[name]
    except KeyError:
        if name in RECONSTRUCTORS:
            raise ConfigError(f"{RECONSTRUCTORS[name].title} ({name!r}) is not trained: it has no loss, "
                              "network or training steps; run it with diffcd.poisson.reconstruct.") from None
        raise ConfigError(
            f"Unknown method {name!r}; choose one of {', '.join(ALL_METHODS)}."
        ) from None


def get_any_method(name: str) -> MethodSpec | ReconstructorSpec:
    """Any method a user can choose (ALL_METHODS) by name; ConfigError for an unknown name."""
    from diffcd.errors import ConfigError

    try:
        return ALL_METHODS[name]
    except KeyError:
        raise ConfigError(f"Unknown method {name!r}; choose one of {', '.join(ALL_METHODS)}.") from None


def traced_weights(config: Any) -> dict[str, float]:
    """The float hyper-parameters, passed to the compiled step as values (no recompile)."""
    return {
        f.name: float(getattr(config, f.name))
        for f in dataclasses.fields(config)
        if isinstance(getattr(config, f.name), float)
    }


def host_setup(spec: MethodSpec, points: np.ndarray, config: Any, seed: int, sigma_neighbors: int,
               report: Callable[[str], None] = lambda stage: None
               ) -> tuple[np.ndarray, Any, np.ndarray, dict[str, np.ndarray]]:
    """A fit's host-side set-up, once per cloud: the points in spatial order (see
    `sampling.spatial_order`), the KD-tree, the local sigma and the method's `prepare` data.

    Returns (points, tree, sigma, extra), all in that order. `report` is called before each stage
    (slow on 1M points).
    """
    report(f"KD-tree and local sigma of {len(points):,} points")
    points = np.ascontiguousarray(points[sampling.spatial_order(points)])
    tree = sampling.cloud_tree(points)
    sigma = sampling.local_sigma(points, k=sigma_neighbors, tree=tree)
    report(f"{spec.title} set-up")
    return points, tree, sigma, spec.prepare(points, sigma, config, seed, tree=tree)


def compile_key(config: Any) -> Any:
    """The config as far as it changes the compiled program: floats only by whether they are 0."""
    return dataclasses.replace(
        config, **{name: float(value != 0) for name, value in traced_weights(config).items()}
    )
