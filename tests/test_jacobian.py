"""geom.jacobian against torch.autograd.functional.jacobian and central finite differences."""
from __future__ import annotations

import pytest
import torch

import geom
from conftest import fd_step, mlp, tol
from geom.jacobian import ForwardModeError


def reference_jacobian(G, z, P=None):
    """Dense per-sample reference: autograd.functional.jacobian of one sample at a time."""
    out = []
    for zi in z:
        def f(x):
            y = G(x[None]).reshape(-1)
            return y if P is None else y @ P
        out.append(torch.autograd.functional.jacobian(f, zi).reshape(-1, zi.numel()))
    return torch.stack(out)


def fd_jacobian(G, z, h, P=None):
    """Central differences, one latent coordinate at a time (computed in the model's dtype)."""
    B, E = z.shape[0], z[0].numel()
    cols = []
    for j in range(E):
        e = torch.zeros(E, dtype=z.dtype)
        e[j] = h
        e = e.reshape(z.shape[1:])
        with torch.no_grad():
            d = (G(z + e) - G(z - e)).reshape(B, -1) / (2 * h)
        cols.append(d if P is None else d @ P)
    return torch.stack(cols, dim=-1)


@pytest.mark.parametrize("act", [torch.nn.Tanh, torch.nn.SiLU, torch.nn.GELU])
@pytest.mark.parametrize("mode", ["reverse", "forward", "auto"])
def test_mlp_jacobian_matches_autograd_and_fd(dtype, act, mode):
    G = mlp([3, 20, 20, 7], seed=1, act=act, dtype=dtype)
    z = torch.randn(5, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64).to(dtype)
    J = geom.jacobian(G, z, mode=mode)
    assert J.shape == (5, 7, 3) and J.dtype == dtype
    torch.testing.assert_close(J, reference_jacobian(G, z), **tol(dtype))
    torch.testing.assert_close(J, fd_jacobian(G, z, fd_step(dtype)), **tol(dtype, "fd"))


def test_projected_jacobian_and_chunking(dtype):
    G = mlp([4, 32, 50], seed=2, act=torch.nn.Tanh, dtype=dtype)
    z = torch.randn(3, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(dtype)
    P = geom.random_projection(50, 6, seed=9, dtype=dtype)
    J = geom.jacobian(G, z, k=6, seed=9)
    assert J.shape == (3, 6, 4)
    torch.testing.assert_close(J, reference_jacobian(G, z, P), **tol(dtype))
    torch.testing.assert_close(geom.jacobian(G, z, projection=P, chunk_size=2, mode="reverse"), J, **tol(dtype))
    torch.testing.assert_close(geom.jacobian(G, z, projection=P, chunk_size=3, mode="forward"), J, **tol(dtype))


def test_multidimensional_latents_and_outputs():
    """Latents (B, 2, 3) and outputs (B, 2, 5): the Jacobian is of the flattened output w.r.t. flattened z."""
    conv = torch.nn.Sequential(torch.nn.Conv1d(2, 4, 3, padding=1), torch.nn.Tanh(),
                               torch.nn.Conv1d(4, 2, 1), torch.nn.Upsample(size=5, mode="linear")).double().eval()
    z = torch.randn(3, 2, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    J = geom.jacobian(conv, z)
    assert J.shape == (3, 10, 6)
    torch.testing.assert_close(J, reference_jacobian(conv, z), **tol(torch.float64))


def tiny_autoencoder(dtype):
    from diffusers import AutoencoderKL

    torch.manual_seed(0)  # diffusers initialises from the global RNG; this test owns the process' RNG use
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), layers_per_block=1,
                        latent_channels=4, norm_num_groups=4, sample_size=8)
    return vae.to(dtype).eval()


def test_diffusers_autoencoder_decode(dtype):
    """The decoder of a tiny diffusers AutoencoderKL (ResNet blocks, GroupNorm, attention, upsampling)."""
    vae = tiny_autoencoder(dtype)
    G = lambda z: vae.decode(z).sample  # noqa: E731
    z = torch.randn(2, 4, 2, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64).to(dtype)
    P = geom.random_projection(3 * 4 * 4, 10, seed=0, dtype=dtype)
    J = geom.jacobian(G, z, projection=P)
    assert J.shape == (2, 10, 16)
    torch.testing.assert_close(J, reference_jacobian(G, z, P), **tol(dtype))
    torch.testing.assert_close(J, fd_jacobian(G, z, fd_step(dtype), P), **tol(dtype, "fd"))
    # full, unprojected Jacobian (48 x 16): forward mode (E < D) or its fallback agrees with reverse mode
    torch.testing.assert_close(geom.jacobian(G, z, mode="auto"), geom.jacobian(G, z, mode="reverse"), **tol(dtype))


def test_jacobian_input_errors():
    G = mlp([3, 8, 4], seed=0)
    z = torch.randn(2, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="batch dimension"):
        geom.jacobian(G, z[0])
    with pytest.raises(ValueError, match="NaN or inf"):
        geom.jacobian(G, torch.tensor([[0.0, float("inf"), 1.0]], dtype=torch.float64))
    with pytest.raises(ValueError, match="larger than the output dimension"):
        geom.jacobian(G, z, k=5)
    with pytest.raises(ValueError, match="shape"):
        geom.jacobian(G, torch.randn(2, 5, dtype=torch.float64))  # wrong latent size for the model
    with pytest.raises(ValueError, match=r"projection must have shape"):
        geom.jacobian(G, z, projection=torch.eye(3, dtype=torch.float64))
    with pytest.raises(TypeError, match="floating"):
        geom.jacobian(G, torch.ones(2, 3, dtype=torch.int64))
    bn = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4)).double().train()
    with pytest.raises(ValueError, match="BatchNorm"):
        geom.jacobian(bn, z)
    with pytest.raises(ValueError, match="expected \\(B, \\*out_shape\\)"):
        geom.jacobian(lambda x: x.sum(0, keepdim=True), torch.randn(3, 2, dtype=torch.float64))


@pytest.mark.parametrize("mode", ["auto", "reverse", "forward"])
def test_diffusers_autoencoder_decode_all_modes(dtype, mode):
    """GroupNorm + attention decoder: every mode gives the autograd reference, forward mode included (group_norm's
    forward-mode derivative fails on the non-contiguous activations of the decoder unless given contiguous
    ones), with the module attached (geom.with_module) and as a plain callable; k = 24 > E = 16 and the full
    48 x 16 Jacobian both make "auto" use forward mode."""
    vae = tiny_autoencoder(dtype)
    z = torch.randn(2, 4, 2, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64).to(dtype)
    P = geom.random_projection(3 * 4 * 4, 24, seed=0, dtype=dtype)
    for G in (geom.with_module(lambda x: vae.decode(x).sample, vae), lambda x: vae.decode(x).sample):
        torch.testing.assert_close(geom.jacobian(G, z, projection=P, mode=mode), reference_jacobian(G, z, P),
                                   **tol(dtype))
        torch.testing.assert_close(geom.jacobian(G, z, mode=mode, chunk_size=5), reference_jacobian(G, z),
                                   **tol(dtype))


class _NoForwardAD(torch.autograd.Function):
    """x -> 2 x with a backward formula but no jvp: forward-mode AD cannot differentiate it."""

    @staticmethod
    def forward(x):
        return 2 * x

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, g):
        return 2 * g


class _Doubling(torch.nn.Module):
    def forward(self, x):
        return _NoForwardAD.apply(x)


def test_forward_mode_names_the_operation_it_cannot_differentiate():
    G = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), _Doubling()).double().eval()
    z = torch.randn(2, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    with pytest.raises(ForwardModeError, match=r"mode='forward' cannot differentiate .* module '2' \(_Doubling\).*"
                                                r"use mode='reverse' or 'auto'"):
        geom.jacobian(G, z, mode="forward")
    ref = reference_jacobian(G, z)
    torch.testing.assert_close(geom.jacobian(G, z, mode="auto"), ref, **tol(torch.float64))  # E < D: falls back
    torch.testing.assert_close(geom.jacobian(G, z, mode="reverse"), ref, **tol(torch.float64))
    snap = {k: v.clone() for k, v in G.state_dict().items()}
    assert all(torch.equal(v, G.state_dict()[k]) for k, v in snap.items())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in G.modules())  # temporary hooks removed


def tiny_dcgan(dtype):
    """A DCGAN-shaped generator (ConvTranspose2d, eval-mode BatchNorm2d with non-trivial running statistics and
    affine parameters, ReLU, Tanh): the engine evaluates BatchNorm as its per-channel affine map."""
    g = torch.Generator().manual_seed(6)
    net = torch.nn.Sequential(
        torch.nn.Unflatten(1, (5, 1, 1)),
        torch.nn.ConvTranspose2d(5, 8, 4, 1, 0, bias=False), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.ConvTranspose2d(8, 4, 4, 2, 1, bias=False), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
        torch.nn.ConvTranspose2d(4, 3, 3, 1, 1, bias=False), torch.nn.Tanh()).to(dtype)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=g, dtype=torch.float64))
                m.running_var.copy_(torch.rand(c, generator=g, dtype=torch.float64) + 0.5)
                m.weight.copy_(torch.randn(c, generator=g, dtype=torch.float64))
                m.bias.copy_(torch.randn(c, generator=g, dtype=torch.float64))
    return net.eval()


@pytest.mark.parametrize("mode", ["auto", "reverse", "forward"])
def test_batchnorm_generator_matches_autograd_in_every_mode(dtype, mode):
    """Eval-mode BatchNorm (the affine map the engine substitutes) between transposed convolutions: every mode,
    projected and unprojected, chunked, against per-sample autograd and central differences; the model's
    buffers and outputs are unchanged afterwards."""
    G = tiny_dcgan(dtype)
    z = torch.randn(3, 5, generator=torch.Generator().manual_seed(7), dtype=torch.float64).to(dtype)
    snap = {k: v.clone() for k, v in G.state_dict().items()}
    P = geom.random_projection(3 * 8 * 8, 7, seed=2, dtype=dtype)
    ref = reference_jacobian(G, z, P)
    torch.testing.assert_close(geom.jacobian(G, z, projection=P, mode=mode), ref, **tol(dtype))
    torch.testing.assert_close(geom.jacobian(G, z, projection=P, mode=mode, chunk_size=3), ref, **tol(dtype))
    torch.testing.assert_close(geom.jacobian(G, z, projection=P, mode=mode), fd_jacobian(G, z, fd_step(dtype), P),
                               **tol(dtype, "fd"))
    torch.testing.assert_close(geom.jacobian(G, z[:2], mode=mode), reference_jacobian(G, z[:2]), **tol(dtype))
    assert all(torch.equal(v, G.state_dict()[k]) for k, v in snap.items())


class _Preallocated(torch.nn.Module):
    """Writes its output into a preallocated buffer in place: runs on a batch, but not under a vmap over its
    samples (a batched value cannot be written into an unbatched buffer), so the engine falls back to one batched
    pass."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 4).double()

    def forward(self, x):
        out = torch.zeros(x.shape[0], 6, dtype=x.dtype)
        out[:, :4] = torch.tanh(self.lin(x))
        out[:, 4:] = x[:, :2] ** 2
        return out


@pytest.mark.parametrize("mode", ["auto", "reverse", "forward"])
def test_generator_that_cannot_run_per_sample_falls_back_to_batched_passes(mode):
    G = _Preallocated().eval()
    z = torch.randn(3, 3, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    with pytest.raises(RuntimeError, match="vmap"):  # control: the per-sample vmap the engine tries first fails
        torch.vmap(lambda v: G(v[None]))(z)
    P = geom.random_projection(6, 4, seed=0, dtype=torch.float64)
    torch.testing.assert_close(geom.jacobian(G, z, mode=mode), reference_jacobian(G, z), **tol(torch.float64))
    torch.testing.assert_close(geom.jacobian(G, z, projection=P, mode=mode, chunk_size=3),
                               reference_jacobian(G, z, P), **tol(torch.float64))


# ------------------------------------------------------------------------------- mode="auto" and the chunk size
JAC = __import__("sys").modules["geom.jacobian"]  # the module (geom.jacobian is also the function's name)


def test_auto_mode_from_shapes_and_the_stored_plan():
    """E >= rows: reverse; E <= rows / AUTO_SHAPE_RATIO: forward; the decision is stored per model and shape and
    reported by jacobian_plan (None before the first call); the Jacobian is the reference either way."""
    G = mlp([3, 16, 40], seed=4, act=torch.nn.Tanh)
    z = torch.randn(2, 3, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    P = geom.random_projection(40, 3, seed=1, dtype=torch.float64)  # rows = 3 = E: reverse
    assert JAC.jacobian_plan(G, z, projection=P) is None
    torch.testing.assert_close(geom.jacobian(G, z, projection=P), reference_jacobian(G, z, P), **tol(torch.float64))
    plan = JAC.jacobian_plan(G, z, projection=P)
    assert plan.mode == "reverse" and plan.passes == 3 and plan.reason.startswith("shapes")
    torch.testing.assert_close(geom.jacobian(G, z), reference_jacobian(G, z), **tol(torch.float64))  # 40 >= 3 * 3
    plan = JAC.jacobian_plan(G, z)
    assert plan.mode == "forward" and plan.passes == 3 and plan.reason.startswith("shapes")
    assert JAC.jacobian_plan(G, z[:1]) is None  # another batch size is another shape
    assert plan.chunk_size is None and plan.bytes_per_pass > 0 and plan.memory_budget > 0  # all passes fit


def test_auto_never_times_anything_and_gives_the_same_bits_as_its_mode(monkeypatch):
    """Between the shape thresholds (rows / 3 < E < rows) auto takes reverse mode by rule, not by a clock: with
    the clock broken it still runs, its Jacobian is bit for bit mode="reverse"'s (same kernels, same layout),
    and a model with a ConvTranspose2d gets the channels-last layout on the CPU by rule (default_layout)."""
    monkeypatch.setattr(JAC, "_timed", lambda fn: (_ for _ in ()).throw(AssertionError("auto measured")))
    G = mlp([5, 16, 12], seed=5, act=torch.nn.Tanh)
    z = torch.randn(3, 5, generator=torch.Generator().manual_seed(10), dtype=torch.float64)
    P = geom.random_projection(12, 8, seed=2, dtype=torch.float64)  # E = 5, rows = 8
    J = geom.jacobian(G, z, projection=P)
    assert torch.equal(J, geom.jacobian(G, z, projection=P, mode="reverse"))
    plan = JAC.jacobian_plan(G, z, projection=P)
    assert plan.mode == "reverse" and plan.reason.startswith("shapes") and plan.layout == "contiguous"
    D = tiny_dcgan(torch.float32)
    zd = torch.randn(2, 5, generator=torch.Generator().manual_seed(13))
    Pd = geom.random_projection(3 * 8 * 8, 4, seed=4)
    Jd = geom.jacobian(D, zd, projection=Pd)
    assert JAC.jacobian_plan(D, zd, projection=Pd).layout == "channels_last" == JAC.default_layout(D)
    assert torch.equal(Jd, geom.jacobian(D, zd, projection=Pd, mode="reverse"))
    assert JAC.default_layout(D, "cuda") == "contiguous" and JAC.default_layout(G) == "contiguous"


@pytest.mark.parametrize("winner", ["reverse", "forward"])
def test_tune_mode_measured_between_the_shape_thresholds(monkeypatch, winner):
    """mode="tune", rows / 3 < E < rows: a one-time measurement decides (here made deterministic: the clock is
    replaced by one that favours `winner`); the Jacobian assembled from the winner's probe and the remaining
    passes equals the reference, and the stored decision is reused without measuring again."""
    G = mlp([5, 16, 12], seed=5, act=torch.nn.Tanh)
    z = torch.randn(3, 5, generator=torch.Generator().manual_seed(10), dtype=torch.float64)
    P = geom.random_projection(12, 8, seed=2, dtype=torch.float64)  # E = 5, rows = 8
    calls = []

    def fake_timed(fn):
        out = fn()
        if out.ndim == 2:  # the plain forward pass (B, D)
            return out, 0.0
        kind = "forward" if tuple(out.shape) == (3, 8, 3) else "reverse"  # probes: (B, rows, m), (B, m, E)
        calls.append(kind)
        return out, 1.0 if kind == winner else 100.0
    monkeypatch.setattr(JAC, "_timed", fake_timed)
    monkeypatch.setattr(JAC, "AUTO_PROBE_PASSES", 3)
    J = geom.jacobian(G, z, projection=P, mode="tune")
    torch.testing.assert_close(J, reference_jacobian(G, z, P), **tol(torch.float64))
    plan = JAC.jacobian_plan(G, z, projection=P, mode="tune")
    assert plan.mode == winner and plan.reason.startswith("measured") and plan.layout == "contiguous"
    assert dict(plan.seconds)[f"{winner}/contiguous"] < 10  # an MLP: no convolution layout to choose
    n = len(calls)
    torch.testing.assert_close(geom.jacobian(G, z, projection=P, mode="tune"), J, **tol(torch.float64))
    assert len(calls) == n == 4  # two timed probes per mode, and no second measurement


def test_chunk_size_from_the_memory_budget():
    """pass_bytes counts the floating outputs of one forward pass (checked by hand), chunk_for_budget divides the
    budget by it, and a budget that holds two passes at a time gives chunked passes with the same Jacobian."""
    G = mlp([4, 8, 3], seed=6, act=torch.nn.Tanh)  # float64, one latent: 8 (linear) + 8 (tanh) + 3 (linear)
    z = torch.randn(5, 4, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    assert JAC.pass_bytes(lambda v: G(v), z[:1]) == (8 + 8 + 3) * 8
    geom.jacobian(G, z, memory_budget="1G")
    per = JAC.jacobian_plan(G, z).bytes_per_pass
    assert per == (4 + 8 + 8 + 3) * 8  # the engine's pass also holds the copy of the latent it hands to G
    assert JAC.chunk_for_budget(passes=10, batch_size=5, bytes_per_pass=per, budget=12 * 5 * per) is None  # all fit
    assert JAC.chunk_for_budget(passes=10, batch_size=5, bytes_per_pass=per, budget=3 * 5 * per) == 2
    assert JAC.chunk_for_budget(passes=10, batch_size=5, bytes_per_pass=per, budget=1) == 1
    ref = reference_jacobian(G, z)
    for mode in ("reverse", "forward"):
        torch.testing.assert_close(geom.jacobian(G, z, mode=mode, memory_budget=3 * 5 * per), ref,
                                   **tol(torch.float64))
    geom.jacobian(G, z, memory_budget=3 * 5 * per)
    assert JAC.jacobian_plan(G, z).chunk_size == 2 and JAC.jacobian_plan(G, z).memory_budget == 3 * 5 * per


def test_memory_budget_sources_and_units(monkeypatch):
    assert JAC.parse_bytes("8G") == 8 << 30 and JAC.parse_bytes("512MiB") == 512 << 20 and JAC.parse_bytes(1000) == 1000
    assert JAC.parse_bytes("1.5K") == 1536
    with pytest.raises(ValueError, match="not a number of bytes"):
        JAC.parse_bytes("lots")
    with pytest.raises(ValueError, match="> 0"):
        JAC.parse_bytes(0)
    monkeypatch.setenv("GEOM_MEMORY_BUDGET", "3M")
    assert JAC.memory_budget_bytes("cpu") == 3 << 20
    assert JAC.memory_budget_bytes("cpu", "1G") == 1 << 30  # the argument wins over the environment
    monkeypatch.delenv("GEOM_MEMORY_BUDGET")
    avail = next(int(line.split()[1]) * 1024 for line in open("/proc/meminfo") if line.startswith("MemAvailable"))
    assert 0.3 * avail < JAC.memory_budget_bytes("cpu") <= 0.7 * avail  # half of what is free (it moves a little)


def test_out_of_memory_halves_the_chunk(monkeypatch):
    """An out-of-memory error in a pass is answered by halving the chunk size and repeating (here simulated:
    chunks of more than 3 rows 'do not fit'); the result is the reference."""
    G = mlp([4, 8, 20], seed=7, act=torch.nn.Tanh)
    z = torch.randn(2, 4, generator=torch.Generator().manual_seed(12), dtype=torch.float64)
    P = geom.random_projection(20, 12, seed=3, dtype=torch.float64)
    real = JAC._jacobian_reverse

    def tight(g, f, zf, projection, D, chunks, module=None):
        if max(b - a for a, b in chunks) > 3:
            raise torch.OutOfMemoryError("simulated: out of memory")
        return real(g, f, zf, projection, D, chunks, module)
    monkeypatch.setattr(JAC, "_jacobian_reverse", tight)
    torch.testing.assert_close(geom.jacobian(G, z, projection=P, mode="reverse"), reference_jacobian(G, z, P),
                               **tol(torch.float64))
    monkeypatch.setattr(JAC, "_jacobian_reverse", lambda *a, **k: (_ for _ in ()).throw(torch.OutOfMemoryError("x")))
    with pytest.raises(torch.OutOfMemoryError):  # not even one row fits: the error reaches the caller
        geom.jacobian(G, z, projection=P, mode="reverse")


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_tune_measures_the_convolution_layout_and_restores_the_weights(monkeypatch, layout):
    """A model with 2-D convolutions: tune also measures the weights' memory layout (here with a clock that
    favours `layout`); the Jacobian is the reference either way, and afterwards the weights are the caller's
    tensors again (same objects, same values, contiguous)."""
    G = tiny_dcgan(torch.float64)
    z = torch.randn(2, 5, generator=torch.Generator().manual_seed(13), dtype=torch.float64)
    P = geom.random_projection(3 * 8 * 8, 4, seed=4, dtype=torch.float64)  # E = 5 >= rows = 4: reverse
    convs = [m for m in G.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    before = [(m.weight, m.weight.data, m.weight.detach().clone()) for m in convs]
    seen = []
    hook = convs[0].register_forward_pre_hook(
        lambda m, a: seen.append("channels_last" if m.weight.is_contiguous(memory_format=torch.channels_last)
                                 and not m.weight.is_contiguous() else "contiguous"))

    def fake_timed(fn):
        seen.clear()
        out = fn()
        if out.ndim == 2:
            return out, 0.0
        return out, 1.0 if seen and seen[-1] == layout else 100.0
    monkeypatch.setattr(JAC, "_timed", fake_timed)
    J = geom.jacobian(G, z, projection=P, mode="tune")
    hook.remove()
    torch.testing.assert_close(J, reference_jacobian(G, z, P), **tol(torch.float64))
    plan = JAC.jacobian_plan(G, z, projection=P, mode="tune")
    assert plan.mode == "reverse" and plan.layout == layout and set(dict(plan.seconds)) == {
        "reverse/contiguous", "reverse/channels_last"}
    for m, (w, data, values) in zip(convs, before):
        assert m.weight is w and m.weight.data.data_ptr() == data.data_ptr() and m.weight.is_contiguous()
        assert torch.equal(m.weight, values)
    torch.testing.assert_close(geom.jacobian(G, z, projection=P, mode="forward"), J, **tol(torch.float64))
