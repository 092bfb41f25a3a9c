"""geom.sweep: resumable descriptor sweeps. The reference is an uninterrupted in-process run; the sweep is
killed mid-run (SIGKILL, and with Ray also one worker actor), resumed, and must give the same table row for
row (no row lost, none duplicated, same numbers). Bad specs fail before any work starts."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
import torch

from conftest import tol

import geom
import geom.planes
import geom.sweep
from geom import paths
from geom.models import ModuleGenerator
from geom.sweep import (MODELS, ShardComputer, Sweep, SweepSpec, load_sweep, mlp_generator,
                        register_model, run_sweep)

N = 12          # 12 x 12 plane = 144 latents
SHARD = 16      # -> 9 shards
SPEC = SweepSpec(model="mlp:0", source=f"plane:{N}", k=32, dim=4, radius=0.05, seed=3, shard_size=SHARD,
                 batch_size=16, dtype="float64", latent_seed=1)
CLI_ARGS = ["--model", "mlp:0", "--plane", str(N), "--k", "32", "--dim", "4", "--radius", "0.05", "--seed", "3",
            "--shard-size", str(SHARD), "--batch-size", "16", "--dtype", "float64", "--latent-seed", "1",
            "--no-progress"]
N_SHARDS = -(-N * N // SHARD)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Uninterrupted single-process run."""
    return run_sweep(SPEC, tmp_path_factory.mktemp("ref"), progress=False)


# `python -m geom.sweep` with every shard slowed by DELAY s after it is computed and after its temporary file
# is written (monkeypatched here, where geom.sweep's modules use the names: in the driver and, through a
# subclass Ray pickles by value, in the worker actors), so that a kill lands in the middle of a sweep and of a
# shard write
SLOW_CLI = """
import sys, time
import geom.sweep as S
from geom.sweep import _executors, _store

DELAY = float(sys.argv[1])
_fsync, _run_shard = _store._fsync, S.ShardComputer.run_shard


def slow_fsync(p):
    _fsync(p)
    time.sleep(DELAY)


def slow_run_shard(self, *a):
    out = _run_shard(self, *a)
    time.sleep(DELAY)
    return out


class _RayWorkerSlow(_executors._RayWorker):
    def run_shard(self, *a):
        out = super().run_shard(*a)
        time.sleep(DELAY)
        return out


_store._fsync, S.ShardComputer.run_shard, _executors._RayWorker = slow_fsync, slow_run_shard, _RayWorkerSlow
sys.exit(S.main(sys.argv[2:]))
"""


def _cli(out: Path, *extra: str, delay: float = 0.0) -> subprocess.Popen:
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-c", SLOW_CLI, str(delay), *CLI_ARGS, "--out", str(out), *extra],
                            cwd=paths.ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _parts(out: Path) -> list[Path]:
    return sorted((out / "shards").glob("part-*.parquet"))


def _wait_for_parts(proc: subprocess.Popen, out: Path, n: int, timeout: float = 120) -> None:
    t0 = time.time()
    while len(_parts(out)) < n:
        if proc.poll() is not None:
            raise AssertionError(f"sweep exited early (rc={proc.returncode}): {proc.stderr.read()[-3000:]}")
        if time.time() - t0 > timeout:
            proc.kill()
            raise AssertionError(f"no {n} shards after {timeout} s")
        time.sleep(0.05)


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def _reap(procs: list[psutil.Process], timeout: float) -> list[int]:
    """Wait up to ``timeout`` s for ``procs`` to exit; kill (by pid) and return those still alive."""
    _, alive = psutil.wait_procs(procs, timeout=max(timeout, 0.1))
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    return [p.pid for p in alive]


def _name(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline()) or p.name()
    except psutil.Error:
        return "?"


def _assert_same(got: pd.DataFrame, ref: pd.DataFrame) -> None:
    assert len(got) == len(ref) == N * N
    assert got["index"].is_unique and (got["index"].to_numpy() == np.arange(N * N)).all()
    pd.testing.assert_frame_equal(got, ref, check_exact=False, rtol=1e-12, atol=1e-12)
    assert (got["delta"].to_numpy() == ref["delta"].to_numpy()).all()


def test_sweep_matches_describe(tmp_path, reference):
    """The sweep's numbers are geom.describe's on the same latents, and the plane is z0 + u(z1-z0) + v(z2-z0)."""
    comp = ShardComputer(SPEC)
    sw = Sweep(SPEC, tmp_path)
    sw.prepare(comp.model)
    z = sw.latents(np.arange(N * N))
    ref = geom.describe(comp.model, z, k=32, radius=0.05, dim=4, seed=3, batch_size=16, progress=False)
    np.testing.assert_array_equal(reference["psi"].to_numpy(), ref["psi"].to_numpy())
    np.testing.assert_array_equal(reference["nu"].to_numpy(), ref["nu"].to_numpy())
    np.testing.assert_array_equal(reference["delta"].to_numpy(), ref["delta"].to_numpy())
    assert reference["delta"].max() > 0, "radius too small to exercise delta"
    g = torch.Generator().manual_seed(1)
    z0, z1, z2 = torch.randn(3, 16, generator=g, dtype=torch.float64)
    r = reference.iloc[37]
    torch.testing.assert_close(z[37], z0 + r.u * (z1 - z0) + r.v * (z2 - z0))
    assert (r.i, r.j) == (37 // N, 37 % N) and r.u == np.linspace(-0.5, 1.5, N)[r.i]


def test_a_run_loads_and_hashes_the_model_once(tmp_path, reference, monkeypatch):
    """run_sweep loads the model once per run (load_generator) and hashes it once (model_digest): a new local
    sweep (the ShardComputer's copy is the one hashed), the re-run of a complete one, and a complete one whose
    recorded weights differ, discarded with overwrite=True and recomputed (the copy that found the change
    computes the rows; before, a second copy was loaded and hashed again)."""
    from geom.sweep import _compute, _executors

    calls = {"load": 0, "digest": 0}
    real_load, real_digest = _compute.load_generator, _executors.model_digest

    def load(*a, **kw):
        calls["load"] += 1
        return real_load(*a, **kw)

    def digest(m):
        calls["digest"] += 1
        return real_digest(m)
    monkeypatch.setattr(_compute, "load_generator", load)
    monkeypatch.setattr(_executors, "load_generator", load)
    monkeypatch.setattr(_executors, "model_digest", digest)
    _assert_same(run_sweep(SPEC, tmp_path / "sw", progress=False), reference)
    assert calls == {"load": 1, "digest": 1}
    _assert_same(run_sweep(SPEC, tmp_path / "sw", progress=False), reference)  # complete: served
    assert calls == {"load": 2, "digest": 2}
    man = json.loads((tmp_path / "sw" / "sweep.json").read_text())  # as if the checkpoint had changed since
    man["inputs"]["model"] = "0" * 64
    (tmp_path / "sw" / "sweep.json").write_text(json.dumps(man))
    _assert_same(run_sweep(SPEC, tmp_path / "sw", overwrite=True, progress=False), reference)  # discarded, redone
    assert calls == {"load": 3, "digest": 3}  # the copy that found the change computes the rows (main: 4, 4)


def test_resume_in_process_skips_done_shards(tmp_path, reference):
    out = tmp_path / "sw"
    run_sweep(SPEC, out, progress=False)
    for p in _parts(out)[5:]:
        p.unlink()
    kept = {p.name: p.stat().st_mtime_ns for p in _parts(out)}
    (out / "shards" / ".tmp-000007-dead.parquet").write_bytes(b"half a file")
    got = run_sweep(SPEC, out, progress=False)
    _assert_same(got, reference)
    assert {p.name: p.stat().st_mtime_ns for p in _parts(out)[:5]} == kept
    assert not list((out / "shards").glob(".tmp-*"))
    _assert_same(load_sweep(out), reference)
    t = time.time()  # a complete sweep returns its table at once: no model loaded, no Ray started
    _assert_same(run_sweep(SPEC, out, executor="ray", progress=False), reference)
    assert time.time() - t < 5


@pytest.mark.slow
def test_cli_kill_and_resume_local(tmp_path, reference):
    out = tmp_path / "sw"
    proc = _cli(out, delay=0.1)
    _wait_for_parts(proc, out, 3)
    kids = psutil.Process(proc.pid).children(recursive=True)
    _kill(proc)
    assert not _reap(kids, 10)
    done = _parts(out)
    assert 3 <= len(done) < N_SHARDS, "the sweep should have been killed mid-run"
    mtimes = {p.name: p.stat().st_mtime_ns for p in done}
    res = subprocess.run([sys.executable, "-m", "geom.sweep", *CLI_ARGS, "--out", str(out)], cwd=paths.ROOT,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert {p.name: p.stat().st_mtime_ns for p in done} == mtimes, "finished shards must not be recomputed"
    assert len(_parts(out)) == N_SHARDS and not list((out / "shards").glob(".tmp-*"))
    _assert_same(pd.read_parquet(out / "shards").sort_values("index").reset_index(drop=True), reference)
    _assert_same(load_sweep(out), reference)


def _actor_procs(driver: psutil.Process) -> list[psutil.Process]:
    out = []
    for p in driver.children(recursive=True):
        try:
            if "_RayWorker" in " ".join(p.cmdline()):
                out.append(p)
        except psutil.Error:
            pass
    return out


@pytest.mark.slow
def test_cli_kill_and_resume_ray(tmp_path, reference):
    """Ray executor (embedded local instance, 2 CPUs, 2 worker actors): SIGKILL the driver mid-run (its Ray
    processes must go with it), resume with Ray, SIGKILL one worker actor mid-run: the sweep completes and
    equals the single-process run. Ray's dashboard and runtime-env agents outlive a SIGKILLed driver until
    their GCS connection times out (~60 s, Ray's own fate-sharing); everything else must exit at once."""
    pytest.importorskip("ray")
    out = tmp_path / "sw"
    ray_args = ("--executor", "ray", "--num-cpus", "2", "--workers", "2")
    proc = _cli(out, *ray_args, delay=0.3)
    _wait_for_parts(proc, out, 2, timeout=240)
    kids = psutil.Process(proc.pid).children(recursive=True)
    agents = [p for p in kids if "Agent" in _name(p)]
    core = [p for p in kids if p not in agents]
    _kill(proc)
    t_kill = time.time()
    stray = _reap(core, 20)
    first = len(_parts(out))
    try:
        assert not stray, f"Ray processes outlived the killed driver by 20 s: {stray}"
        assert 2 <= first < N_SHARDS

        proc = _cli(out, *ray_args, delay=0.3)
        driver = psutil.Process(proc.pid)
        try:
            _wait_for_parts(proc, out, first + 1, timeout=240)
            actors = _actor_procs(driver)
            assert actors, "no Ray worker actor process found"
            actors[0].kill()
            kids = driver.children(recursive=True)
            stdout, stderr = proc.communicate(timeout=240)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, stderr[-3000:]
        assert "died" in stderr, "the killed worker should have been noticed and its shard retried"
        assert not _reap(kids, 20), "stray processes after a completed Ray sweep"
        _assert_same(load_sweep(out), reference)
    finally:
        stray_agents = _reap(agents, 90 - (time.time() - t_kill))
    assert not stray_agents, f"Ray agents still alive 90 s after the driver was killed: {stray_agents}"


def test_bad_specs_fail_before_work(tmp_path):
    with pytest.raises(ValueError, match="unknown model 'no-such-model'"):
        run_sweep(SweepSpec(model="no-such-model", source="plane:4"), tmp_path / "a")
    assert not (tmp_path / "a").exists()
    with pytest.raises(ValueError, match="grid size must be >= 1"):
        run_sweep(SweepSpec(model="mlp:0", source="plane:0"), tmp_path / "b")
    assert not (tmp_path / "b").exists()
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises((PermissionError, NotADirectoryError), match="not writable|not a directory"):
        run_sweep(SweepSpec(model="mlp:0", source="plane:4"), blocker / "sub")
    with pytest.raises((PermissionError, NotADirectoryError)):
        run_sweep(SweepSpec(model="mlp:0", source="plane:4"), blocker)
    with pytest.raises(ValueError, match="larger than the output dimension"):
        run_sweep(SweepSpec(model="mlp:0", source="plane:4", k=1000), tmp_path / "c", progress=False)
    assert not list((tmp_path / "c" / "shards").glob("part-*"))
    with pytest.raises(FileNotFoundError):
        run_sweep(SweepSpec(model="mlp:0", source="npy:/no/such.npy"), tmp_path / "d")
    with pytest.raises(ValueError, match="executor"):
        run_sweep(SPEC, tmp_path / "e", executor="spark")


def test_resume_refuses_other_settings(tmp_path):
    spec = SweepSpec(model="mlp:0", source="plane:3", k=8, shard_size=4)
    run_sweep(spec, tmp_path, progress=False)
    with pytest.raises(ValueError, match="other settings"):
        run_sweep(SweepSpec(model="mlp:0", source="plane:3", k=9, shard_size=4), tmp_path, progress=False)
    df = run_sweep(SweepSpec(model="mlp:0", source="plane:3", k=9, shard_size=4), tmp_path, overwrite=True,
                   progress=False)
    assert len(df) == 9 and (df["k"] == 9).all()


def test_no_projection_has_one_spelling_per_layer(tmp_path, capsys):
    """issue 25: no projection is ``k=None`` in Python, ``--k none`` on the command line (``--k 0``, the former
    spelling, still works with a deprecation message on stderr) and ``<NA>`` in the table's nullable ``Int64``
    column ``k`` (never the former -1). Reference: geom.describe with k=None on the sweep's latents."""
    spec = SweepSpec(model="mlp:0", source="plane:3", k=None, dim=2, radius=0.05, seed=1, shard_size=4,
                     dtype="float64")
    df = run_sweep(spec, tmp_path / "py", progress=False)
    assert str(df["k"].dtype) == "Int64" and df["k"].isna().all()
    assert Sweep.open(tmp_path / "py").spec.k is None
    assert json.loads((tmp_path / "py" / "sweep.json").read_text())["settings"]["k"] is None
    comp = ShardComputer(spec)
    with Sweep(spec, tmp_path / "latents") as sw:
        sw.prepare(comp.model)
        z = sw.latents(np.arange(9))
    ref = geom.describe(comp.model, z, k=None, radius=0.05, dim=2, seed=1, progress=False)
    np.testing.assert_array_equal(df["psi"].to_numpy(), ref["psi"].to_numpy())
    np.testing.assert_array_equal(df["delta"].to_numpy(), ref["delta"].to_numpy())
    base = ["--model", "mlp:0", "--plane", "3", "--dim", "2", "--radius", "0.05", "--seed", "1", "--shard-size", "4",
            "--dtype", "float64", "--no-progress"]
    assert geom.sweep.main(base + ["--k", "none", "--out", str(tmp_path / "cli")]) == 0
    assert "deprecated" not in capsys.readouterr().err
    pd.testing.assert_frame_equal(load_sweep(tmp_path / "cli"), df)
    assert geom.sweep.main(base + ["--k", "0", "--out", str(tmp_path / "cli0")]) == 0
    assert "--k 0 is deprecated; write --k none" in capsys.readouterr().err
    pd.testing.assert_frame_equal(load_sweep(tmp_path / "cli0"), df)
    assert geom.sweep.main(base + ["--k", "none", "--out", str(tmp_path / "c"), "--check"]) == 0
    assert "(k=none," in capsys.readouterr().out
    for bad in ("-3", "many"):
        with pytest.raises(SystemExit):
            geom.sweep.main(base + ["--k", bad, "--out", str(tmp_path / "bad")])
        assert "expected an integer >= 1 or 'none'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="no projection is spelt k=None"):
        geom.describe(comp.model, z, k=0, progress=False)


def test_shards_of_an_older_geom_read_k_minus_one_as_no_projection(tmp_path):
    """A no-projection sweep folder written before issue 25 holds -1 in its shards' k column: the table reads
    it as <NA> (one shard rewritten in the former form, its checksum recorded as the older geom did)."""
    from geom.chunks import read_part, write_part

    spec = SweepSpec(model="mlp:0", source="plane:3", k=None, dim=2, radius=0.05, seed=1, shard_size=4)
    ref = run_sweep(spec, tmp_path, progress=False)
    old = read_part(tmp_path / "shards", 1)
    old["k"] = np.int64(-1)
    write_part(tmp_path / "shards", 1, old)
    got = load_sweep(tmp_path)
    assert (read_part(tmp_path / "shards", 1)["k"] == -1).all()  # the file holds the former form
    pd.testing.assert_frame_equal(got, ref)
    spec120 = SweepSpec(model="mlp:0", source="plane:3", k=8, dim=2, radius=0.05, seed=1, shard_size=4)
    df = run_sweep(spec120, tmp_path / "k8", progress=False)
    assert df["k"].dtype == np.int64 and (df["k"] == 8).all()  # a projected sweep's column: int64, as before


def test_cli_bad_spec_message(tmp_path):
    res = subprocess.run([sys.executable, "-m", "geom.sweep", "--model", "mlp:0", "--plane", "0", "--out",
                          str(tmp_path / "x")], cwd=paths.ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "grid size must be >= 1" in res.stderr


def test_npy_latents_and_encoded_images(tmp_path):
    """An array of latents is used as is; an array of images is encoded by the model's encoder (and cached)."""
    g = torch.Generator().manual_seed(0)
    lat = torch.randn(10, 16, generator=g, dtype=torch.float64).numpy()
    np.save(tmp_path / "z.npy", lat)
    spec = SweepSpec(model="mlp:0", source=f"npy:{tmp_path / 'z.npy'}", k=16, shard_size=4, dtype="float64",
                     radius=0.05)
    df = run_sweep(spec, tmp_path / "a", progress=False)
    comp = ShardComputer(spec)
    ref = geom.describe(comp.model, torch.as_tensor(lat), k=16, radius=0.05, dim=4, seed=0, batch_size=16,
                        progress=False)
    np.testing.assert_allclose(df["psi"], ref["psi"], rtol=1e-12)
    assert list(df["index"]) == list(range(10))
    # images (n, 1, 4, 4) -> latents (n, 16) by a toy encoder registered as a model spec
    enc = torch.nn.Linear(16, 16, dtype=torch.float64)
    register_model("toy-ae", lambda arg, device, dtype: ModuleGenerator(
        "toy-ae", mlp_generator(0, dtype=dtype), (16,), (256,), image_size=(1, 4, 4),
        encode=lambda x: enc(x.reshape(x.shape[0], -1))))
    try:
        imgs = torch.rand(6, 1, 4, 4, generator=g, dtype=torch.float64).numpy() * 2 - 1
        np.save(tmp_path / "x.npy", imgs)
        df = run_sweep(SweepSpec(model="toy-ae", source=f"npy:{tmp_path / 'x.npy'}", k=16, shard_size=4,
                                 dtype="float64", radius=0.05), tmp_path / "b", progress=False)
        # an image folder: sorted by name, resized to the model's image size (1, 4, 4), mapped to [-1, 1]
        from PIL import Image
        (tmp_path / "imgs").mkdir()
        pix = (np.arange(4 * 4 * 3).reshape(3, 4, 4) * 5).astype(np.uint8)
        for n, im in zip(["b.png", "a.png", "c.png"], pix):
            Image.fromarray(im, mode="L").save(tmp_path / "imgs" / n)
        (tmp_path / "imgs" / "notes.txt").write_text("not an image")
        dfi = run_sweep(SweepSpec(model="toy-ae", source=f"images:{tmp_path / 'imgs'}", k=16, shard_size=2,
                                  dtype="float64", radius=0.05), tmp_path / "c", progress=False)
        assert len(dfi) == 3
        want = torch.as_tensor(pix[[1, 0, 2]].astype(np.float32) / 127.5 - 1, dtype=torch.float64)
        with torch.no_grad():
            np.testing.assert_allclose(np.load(tmp_path / "c" / "latents.npy"),
                                       enc(want.reshape(3, -1)).numpy(), rtol=1e-6)
    finally:
        MODELS.pop("toy-ae")
    with torch.no_grad():
        zimg = enc(torch.as_tensor(imgs).reshape(6, -1))
    np.testing.assert_array_equal(np.load(tmp_path / "b" / "latents.npy"), zimg.numpy())
    ref = geom.describe(comp.model, zimg, k=16, radius=0.05, dim=4, seed=0, batch_size=16, progress=False)
    np.testing.assert_allclose(df["psi"], ref["psi"], rtol=1e-12)


def test_diffusers_folder_and_pipeline_models(tmp_path):
    """A local diffusers folder loads only its VAE (decoder z -> decode(z / scaling_factor)); 'tiny-ldm' is the
    decoder of geom.models.load_pipeline. Both resolve through geom.models.load_generator, whose registry
    geom.sweep re-exports."""
    from diffusers import AutoencoderKL

    from geom.models import generators, load_pipeline

    assert geom.sweep.MODELS is generators.MODELS and geom.sweep.load_model is generators.load_model
    vae = AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=4,
                        sample_size=16, layers_per_block=1).eval()
    vae.save_pretrained(tmp_path / "sd" / "vae")
    df = run_sweep(SweepSpec(model=str(tmp_path / "sd"), source="plane:2", k=8, radius=0.01, shard_size=3),
                   tmp_path / "out", progress=False)
    z = Sweep(SweepSpec(model=str(tmp_path / "sd"), source="plane:2", k=8, radius=0.01, shard_size=3),
              tmp_path / "out")
    z.prepare(ShardComputer(z.spec).model)
    lat = z.latents(np.arange(4))
    assert lat.shape == (4, 4, 8, 8)
    G = geom.with_module(lambda v: vae.decode(v / vae.config.scaling_factor).sample, vae)
    ref = geom.describe(G, lat, k=8, radius=0.01, dim=4, seed=0, batch_size=16, progress=False)
    # float32: the registry's frozen weights may take another oneDNN convolution path (~1e-5 relative)
    np.testing.assert_allclose(df["psi"], ref["psi"], rtol=1e-4)
    np.testing.assert_array_equal(df["delta"], ref["delta"])

    m = geom.sweep.load_generator("tiny-ldm")
    pipe = load_pipeline("tiny-ldm")
    assert m.latent_shape == (4, 8, 8) and m.image_size == (3, 32, 32)
    zt = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(m(zt), pipe.vae_decode(zt))


@pytest.mark.usefixtures("one_thread")
@pytest.mark.kernels
def test_dcgan_faces_as_a_sweep_model(tmp_path):
    """The pretrained dcgan-faces (geom.models.load_generator) is a sweep model spec: the sweep's rows are
    geom.describe's of the loaded generator on the plane's latents, and its weights hash is recorded."""
    from geom.models import load_generator

    spec = SweepSpec(model="dcgan-faces", source="plane:2", k=8, dim=2, radius=1e-5, seed=1, shard_size=3,
                     batch_size=2, latent_seed=4)
    df = run_sweep(spec, tmp_path / "out", progress=False)
    G = load_generator("dcgan-faces")
    z = geom.planes.plane_latents(geom.planes.plane_anchors((100,), latent_seed=4), *geom.planes.plane_uv(2))
    ref = geom.describe(G, z, k=8, radius=1e-5, dim=2, seed=1, batch_size=2, progress=False)
    # float32 Jacobians: other batch shapes (shards of 3 in batches of 2 vs batches of 2) and the engine's auto
    # mode (decided by a timing, geom.jacobian_plan) round the last digits differently, so psi and nu agree at
    # the float32 tolerance (a row of other latents misses by > 0.3); delta (float64 vertices) exactly
    for c in ("psi", "nu"):
        np.testing.assert_allclose(df[c].to_numpy(), ref[c].to_numpy(), **tol(torch.float32))
    np.testing.assert_array_equal(df["delta"].to_numpy(), ref["delta"].to_numpy())
    assert np.isfinite(df["psi"]).all() and (df["nu"] > 1).all()
    man = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert man["inputs"]["model"] == geom.sweep.model_digest(geom.sweep.load_generator("dcgan-faces"))


# ------------------------------------------------------------------------------------- resuming over changed inputs
def _tree(folder: Path) -> dict[str, bytes]:
    return {str(f.relative_to(folder)): f.read_bytes() for f in sorted(folder.rglob("*")) if f.is_file()}


def _describe(G, z, spec: SweepSpec) -> pd.DataFrame:
    return geom.describe(G, torch.as_tensor(z), k=spec.k, radius=spec.radius, dim=spec.dim, seed=spec.seed,
                         batch_size=spec.batch_size, progress=False)


def test_changed_latent_file_is_refused_or_recomputed(tmp_path):
    """Interrupted sweep, latent file regenerated at the same path, same command again: refused (naming the file
    and both hashes), also once complete; with overwrite the rows are those of the new file (reference:
    geom.describe on the new latents), not the cached old latents."""
    src, out = tmp_path / "z.npy", tmp_path / "out"
    A = np.random.default_rng(0).normal(size=(8, 16))
    B = np.random.default_rng(1).normal(size=(8, 16))
    np.save(src, A)
    spec = SweepSpec(model="mlp:0", source=f"npy:{src}", k=8, dim=2, radius=0.05, shard_size=4, batch_size=4,
                     dtype="float64")
    run_sweep(spec, out, progress=False)
    (out / "shards" / "part-000001.parquet").unlink()
    np.save(src, B)
    with pytest.raises(ValueError, match=r"source file .*z\.npy changed since this sweep was started \(sha256"):
        run_sweep(spec, out, progress=False)
    got = run_sweep(spec, out, overwrite=True, progress=False)
    G = geom.sweep.load_generator("mlp:0", dtype="float64")
    np.testing.assert_allclose(got["psi"], _describe(G, B, spec)["psi"], rtol=1e-12)
    np.testing.assert_array_equal(np.load(out / "latents.npy"), B)
    np.save(src, A)  # a complete sweep is not served for other latents either
    with pytest.raises(ValueError, match="source file"):
        run_sweep(spec, out, progress=False)


def test_changed_image_folder_is_refused(tmp_path):
    from PIL import Image

    enc = torch.nn.Linear(16, 16, dtype=torch.float64)
    register_model("toy-ae2", lambda arg, device, dtype: ModuleGenerator(
        "toy-ae2", mlp_generator(0, dtype=dtype), (16,), (256,), image_size=(1, 4, 4),
        encode=lambda x: enc(x.reshape(x.shape[0], -1))))
    try:
        (tmp_path / "imgs").mkdir()
        for n in ("a.png", "b.png"):
            Image.fromarray(np.full((4, 4), 7 * len(n), np.uint8), mode="L").save(tmp_path / "imgs" / n)
        spec = SweepSpec(model="toy-ae2", source=f"images:{tmp_path / 'imgs'}", k=8, shard_size=1,
                         dtype="float64", radius=0.05)
        run_sweep(spec, tmp_path / "out", progress=False)
        Image.fromarray(np.zeros((4, 4), np.uint8), mode="L").save(tmp_path / "imgs" / "b.png")  # edited
        with pytest.raises(ValueError, match="image folder .* changed"):
            run_sweep(spec, tmp_path / "out", progress=False)
    finally:
        MODELS.pop("toy-ae2")


def test_changed_anchors_are_refused(tmp_path):
    anchors = tmp_path / "anchors.npy"
    np.save(anchors, np.random.default_rng(0).normal(size=(3, 16)))
    spec = SweepSpec(model="mlp:0", source="plane:3", k=8, shard_size=4, radius=0.05, anchors=str(anchors))
    run_sweep(spec, tmp_path / "out", progress=False)
    (tmp_path / "out" / "shards" / "part-000000.parquet").unlink()
    np.save(anchors, np.random.default_rng(1).normal(size=(3, 16)))
    with pytest.raises(ValueError, match="anchors file .* changed"):
        run_sweep(spec, tmp_path / "out", progress=False)


def test_changed_weights_are_refused(tmp_path):
    """A changed checkpoint in a model folder (same path, same settings) is refused, whether the sweep is
    unfinished or complete; a different mlp seed is a different setting."""
    from diffusers import AutoencoderKL

    vae = AutoencoderKL(block_out_channels=(8,), down_block_types=("DownEncoderBlock2D",),
                        up_block_types=("UpDecoderBlock2D",), latent_channels=4, norm_num_groups=4,
                        sample_size=8, layers_per_block=1).eval()
    vae.save_pretrained(tmp_path / "sd" / "vae")
    spec = SweepSpec(model=str(tmp_path / "sd"), source="plane:2", k=8, radius=0.01, shard_size=2)
    run_sweep(spec, tmp_path / "out", progress=False)
    with torch.no_grad():
        vae.decoder.conv_out.bias += 1e-3
    vae.save_pretrained(tmp_path / "sd" / "vae")  # retrained checkpoint, same folder
    with pytest.raises(ValueError, match="weights of model .* changed since this sweep was started"):
        run_sweep(spec, tmp_path / "out", progress=False)  # complete sweep
    (tmp_path / "out" / "shards" / "part-000001.parquet").unlink()
    with pytest.raises(ValueError, match="weights of model"):
        run_sweep(spec, tmp_path / "out", progress=False)  # unfinished sweep
    m0, m1 = geom.sweep.load_generator("mlp:0"), geom.sweep.load_generator("mlp:1")
    assert geom.sweep.model_digest(m0) == geom.sweep.model_digest(geom.sweep.load_generator("mlp:0"))
    assert geom.sweep.model_digest(m0) != geom.sweep.model_digest(m1)
    run_sweep(SweepSpec(model="mlp:0", source="plane:2", k=8, shard_size=2), tmp_path / "m", progress=False)
    with pytest.raises(ValueError, match="other settings"):
        run_sweep(SweepSpec(model="mlp:1", source="plane:2", k=8, shard_size=2), tmp_path / "m", progress=False)


def test_rows_without_recorded_inputs_are_refused(tmp_path):
    """A folder whose manifest has no input hashes (an older geom), or rows without a manifest, cannot be
    checked: refused unless overwrite; a latents cache altered after it was written is not used."""
    spec = SweepSpec(model="mlp:0", source="plane:2", k=8, shard_size=2)
    out = tmp_path / "out"
    run_sweep(spec, out, progress=False)
    man = out / "sweep.json"
    doc = json.loads(man.read_text())
    doc.pop("inputs")
    man.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="without content hashes"):
        run_sweep(spec, out, progress=False)
    man.unlink()
    with pytest.raises(ValueError, match="no sweep.json"):
        run_sweep(spec, out, progress=False)
    assert len(run_sweep(spec, out, overwrite=True, progress=False)) == 4

    src = tmp_path / "z.npy"
    np.save(src, np.random.default_rng(0).normal(size=(4, 16)).astype(np.float32))
    nspec = SweepSpec(model="mlp:0", source=f"npy:{src}", k=8, shard_size=2)
    ref = run_sweep(nspec, tmp_path / "n", progress=False)
    (tmp_path / "n" / "shards" / "part-000001.parquet").unlink()
    np.save(tmp_path / "n" / "latents.npy", np.zeros((4, 16), np.float32))  # not the file the sweep wrote
    pd.testing.assert_frame_equal(run_sweep(nspec, tmp_path / "n", progress=False), ref)


def test_load_sweep_is_read_only(tmp_path):
    """load_sweep creates, writes and deletes nothing, and needs neither the model nor the source."""
    src = tmp_path / "z.npy"
    np.save(src, np.random.default_rng(0).normal(size=(5, 16)).astype(np.float32))
    spec = SweepSpec(model="mlp:0", source=f"npy:{src}", k=8, shard_size=2)
    out = tmp_path / "out"
    ref = run_sweep(spec, out, progress=False)
    (out / "shards" / ".tmp-dead-part.parquet").write_bytes(b"half")
    before = _tree(out)
    src.unlink()
    pd.testing.assert_frame_equal(load_sweep(out), ref)
    assert _tree(out) == before
    with pytest.raises(FileNotFoundError, match="no sweep"):
        load_sweep(tmp_path / "nothing")
    assert not (tmp_path / "nothing").exists()


def test_sweep_of_another_descriptor_engine_is_refused(tmp_path, monkeypatch):
    """Rows computed by other descriptor code (geom.descriptors.ENGINE_VERSION, recorded in the manifest's
    settings) are never served: a complete or unfinished sweep is refused naming engine_version, an old
    manifest without it too; overwrite recomputes. Reference: geom.describe on the same latents."""
    import geom.descriptors

    spec = SweepSpec(model="mlp:0", source="plane:2", k=8, shard_size=2, dtype="float64", radius=0.05)
    out = tmp_path / "out"
    ref = run_sweep(spec, out, progress=False)
    assert json.loads((out / "sweep.json").read_text())["settings"]["engine_version"] == geom.descriptors.ENGINE_VERSION
    monkeypatch.setattr(geom.descriptors, "ENGINE_VERSION", geom.descriptors.ENGINE_VERSION + 1)
    with pytest.raises(ValueError, match="engine_version.*descriptor code"):
        run_sweep(spec, out, progress=False)  # complete
    (out / "shards" / "part-000001.parquet").unlink()
    with pytest.raises(ValueError, match="engine_version"):
        run_sweep(spec, out, progress=False)  # unfinished
    got = run_sweep(spec, out, overwrite=True, progress=False)
    doc = json.loads((out / "sweep.json").read_text())
    assert doc["settings"]["engine_version"] == geom.descriptors.ENGINE_VERSION
    pd.testing.assert_frame_equal(got, ref)
    pd.testing.assert_frame_equal(load_sweep(out), ref)  # the read-only view accepts the recorded version
    monkeypatch.undo()
    doc["settings"].pop("engine_version")  # a manifest written before the version was recorded
    (out / "sweep.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"'engine_version': \(None, "):
        run_sweep(spec, out, progress=False)
    z = geom.planes.plane_latents(geom.planes.plane_anchors((16,), dtype=torch.float64), *geom.planes.plane_uv(2))
    desc = geom.describe(geom.sweep.load_generator("mlp:0", dtype="float64"), z, k=8, radius=0.05, progress=False)
    np.testing.assert_allclose(ref["psi"], desc["psi"], rtol=1e-12)


def test_cli_interrupt_says_how_to_resume(tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(geom.sweep._cli, "run_sweep", interrupted)  # where main looks it up
    rc = geom.sweep.main(["--model", "mlp:0", "--plane", "2", "--out", str(tmp_path / "s"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 130 and len(err) == 1 and "run the same command again to resume" in err[0].lower()


def test_cli_help_shows_every_default_and_describes_every_option(capsys):
    with pytest.raises(SystemExit):
        geom.sweep.main(["--help"])
    out = capsys.readouterr().out
    options = [ln.split()[0] for ln in out.splitlines() if ln.strip().startswith("--") and ln.strip() != "--help"]
    assert "--shard-size" in options and "--batch-size" in options and "(default: 64)" in out
    blocks = out.split("\n  --")[1:]
    undocumented = [b.split()[0] for b in blocks if len(b.split()) < 3 and "default" not in b]
    assert not undocumented, undocumented


def test_cli_check_validates_without_computing_or_creating_anything(tmp_path, capsys):
    out = tmp_path / "s"
    assert geom.sweep.main(["--model", "mlp:0", "--plane", "3", "--out", str(out), "--check"]) == 0
    assert "would run mlp:0 on plane:3" in capsys.readouterr().out and not out.exists()
    assert geom.sweep.main(["--model", "no-such-model", "--plane", "3", "--out", str(out), "--check"]) == 2
    assert "no-such-model" in capsys.readouterr().err
    assert geom.sweep.main(["--model", "mlp:0", "--plane", "3", "--radius", "-1", "--out", str(out), "--check"]) == 2
    assert "radius must be" in capsys.readouterr().err and not out.exists()


# ------------------------------------------------------------------------------ damaged shards, concurrent runs
def _mtimes(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in _parts(out)}


@pytest.mark.parametrize("how", ["half", "empty", "middle"])
def test_damaged_shard_is_named_and_only_it_is_recomputed(tmp_path, reference, capsys, how):
    """A shard damaged from outside (cut to half or 0 bytes, 16 bytes overwritten in the middle): loading the
    sweep names the file and the fix; so do resuming and the CLI once shard 7 is lost too, before any work
    (shard 7 is not computed). After the file is deleted, the same command recomputes exactly shards 3 and 7
    and the table equals an undamaged run row for row."""
    out = tmp_path / "sw"
    run_sweep(SPEC, out, progress=False)
    bad = out / "shards" / "part-000003.parquet"
    data = bad.read_bytes()
    mid = len(data) // 2
    bad.write_bytes({"half": data[:mid], "empty": b"", "middle": data[:mid] + bytes(16) + data[mid + 16:]}[how])
    fix = "delete that file and run the same command again: the run resumes and recomputes only that part"
    for lost in (None, "part-000007.parquet"):
        if lost:
            (out / "shards" / lost).unlink()
        kept = _mtimes(out)
        with pytest.raises(geom.sweep.DamagedPartError) as e:
            run_sweep(SPEC, out, progress=False) if lost else load_sweep(out)
        assert f"sweep part {bad} is damaged: checksum mismatch" in str(e.value) and fix in str(e.value)
        assert e.value.paths == [bad]
    assert geom.sweep.main([*CLI_ARGS, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"geom.sweep: error: sweep part {bad} is damaged" in err and fix in err
    assert _mtimes(out) == kept and bad.read_bytes() != data, "nothing may be computed or repaired behind the user"
    bad.unlink()  # the fix
    del kept[bad.name]
    got = run_sweep(SPEC, out, progress=False)
    now = _mtimes(out)
    assert sorted(set(now) - set(kept)) == ["part-000003.parquet", "part-000007.parquet"]
    assert {k: now[k] for k in kept} == kept, "intact shards must not be recomputed"
    _assert_same(got, reference)
    _assert_same(load_sweep(out), reference)
    _assert_same(pd.read_parquet(out / "shards").sort_values("index").reset_index(drop=True), reference)


def test_a_second_run_is_refused_while_one_holds_the_folder(tmp_path, reference, capsys):
    """While a run holds the folder (a Sweep open for writing), another run, with or without --overwrite, is
    refused naming the folder and the holder, and deletes nothing; loading the table needs no lock. A run that
    fails to open the folder (other settings) releases it at once."""
    out = tmp_path / "sw"
    run_sweep(SPEC, out, progress=False)
    before = _mtimes(out)
    with Sweep(SPEC, out) as held:
        assert held.out == out
        for kw in ({}, {"overwrite": True}):
            with pytest.raises(geom.sweep.FolderLockedError,
                               match=rf"sweep folder {out} is in use by another run \(pid {os.getpid()} on .*"
                                     r"wait for that run to finish \(or stop it\), or use another folder"):
                run_sweep(SPEC, out, progress=False, **kw)
        assert geom.sweep.main([*CLI_ARGS, "--out", str(out), "--overwrite"]) == 2
        assert f"sweep folder {out} is in use by another run" in capsys.readouterr().err
        _assert_same(load_sweep(out), reference)
        assert _mtimes(out) == before
    other = SweepSpec(model="mlp:0", source="plane:3", k=8, shard_size=4)
    with pytest.raises(ValueError, match="other settings") as refused:
        Sweep(other, out)
    assert refused.value.__traceback__ is not None  # the failed Sweep is still referenced here, yet released:
    _assert_same(run_sweep(SPEC, out, progress=False), reference)


# `python -m geom.sweep` whose shards after the first two wait, their temporary files written, until the file
# argv[1] exists: a second run started meanwhile meets the first mid-write, however slowly either starts
GATED_CLI = """
import sys, time
from pathlib import Path
import geom.sweep as S
from geom.sweep import _store

gate, _fsync = Path(sys.argv[1]), _store._fsync


def gated_fsync(p):
    _fsync(p)
    while len(list(p.parent.glob("part-*.parquet"))) >= 2 and not gate.exists():
        time.sleep(0.02)


_store._fsync = gated_fsync
sys.exit(S.main(sys.argv[2:]))
"""


def _gated_cli(out: Path, gate: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", GATED_CLI, str(gate), *CLI_ARGS, "--out", str(out)],
                            cwd=paths.ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_concurrent_cli_runs_never_race_and_a_killed_run_resumes(tmp_path, reference):
    """Two `python -m geom.sweep` on one folder: the second is refused naming the first's pid, and the first,
    whose temporary shard file the second used to delete (the first then died in os.replace: FileNotFoundError),
    finishes with the reference table. A run killed with SIGKILL mid-run leaves no lock: the same command
    resumes at once and computes only the missing shards."""
    out, gate = tmp_path / "sw", tmp_path / "go"
    first = _gated_cli(out, gate)
    try:
        _wait_for_parts(first, out, 2)
        second = subprocess.run([sys.executable, "-m", "geom.sweep", *CLI_ARGS, "--out", str(out)], cwd=paths.ROOT,
                                capture_output=True, text=True, timeout=300)
        assert second.returncode == 2 and f"in use by another run (pid {first.pid} on " in second.stderr, \
            second.stderr[-3000:]
        assert first.poll() is None and list((out / "shards").glob(".tmp-*")), "the first run should be mid-write"
        gate.touch()
        _, err = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            _kill(first)
    assert first.returncode == 0, err[-3000:]
    _assert_same(load_sweep(out), reference)

    out = tmp_path / "killed"
    proc = _gated_cli(out, tmp_path / "never")
    try:
        _wait_for_parts(proc, out, 2)
    finally:
        _kill(proc)
    done = _mtimes(out)
    assert len(done) == 2 and (out / ".lock").exists()
    _assert_same(run_sweep(SPEC, out, progress=False), reference)
    assert {k: v for k, v in _mtimes(out).items() if k in done} == done
