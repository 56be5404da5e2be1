"""`cenmesh inspect` accepts the valid vector and rejects each bad one with its reason (a real subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.test_vectors import EXPECTED_REASON

NOW = "1700000100000"


def run_inspect(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "node.cli", "inspect", *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def files(tmp_path, bundle_vectors, node_vectors):
    origin = next(n for n in node_vectors if n["node_id"] == bundle_vectors["valid"]["origin"])
    reader = next(n for n in node_vectors if n["node_id"] == bundle_vectors["valid"]["recipient"])
    (tmp_path / "origin.json").write_text(json.dumps(origin["descriptor"]))
    (tmp_path / "reader.key").write_text(reader["enc_private_hex"] + "\n")
    (tmp_path / "valid.json").write_text(json.dumps(bundle_vectors["valid"]["bundle"]))
    for i, case in enumerate(bundle_vectors["reject"] + bundle_vectors["reject_on_open"]):
        (tmp_path / f"bad{i}.json").write_text(json.dumps(case["bundle"]))
    return tmp_path, reader["node_id"]


def test_valid_bundle_opens(files, bundle_vectors):
    d, reader = files
    out = run_inspect(str(d / "valid.json"), "--descriptor", str(d / "origin.json"),
                      "--enc-key", str(d / "reader.key"), "--as", reader, "--now", NOW, "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["valid"] and report["id"] == bundle_vectors["valid"]["id"]
    assert report["payload"] == bundle_vectors["valid"]["payload"]


def test_valid_bundle_human_output(files):
    d, _ = files
    out = run_inspect(str(d / "valid.json"), "--descriptor", str(d / "origin.json"), "--now", NOW)
    assert out.returncode == 0
    assert "VALID" in out.stdout and "signature" in out.stdout


def test_each_bad_vector_is_rejected_with_its_reason(files, bundle_vectors):
    d, reader = files
    for i, case in enumerate(bundle_vectors["reject"]):
        out = run_inspect(str(d / f"bad{i}.json"), "--descriptor", str(d / "origin.json"), "--now", NOW, "--json")
        assert out.returncode == 1, (case["why"], out.stdout, out.stderr)
        assert json.loads(out.stdout)["reason"] == EXPECTED_REASON[case["why"]], case["why"]
    n = len(bundle_vectors["reject"])
    out = run_inspect(str(d / f"bad{n}.json"), "--descriptor", str(d / "origin.json"),
                      "--enc-key", str(d / "reader.key"), "--as", reader, "--now", NOW, "--json")
    assert out.returncode == 1 and json.loads(out.stdout)["reason"] == "decrypt"


def test_expired_at_a_later_now(files):
    d, _ = files
    out = run_inspect(str(d / "valid.json"), "--descriptor", str(d / "origin.json"), "--now", "1731536000000", "--json")
    assert out.returncode == 1 and json.loads(out.stdout)["reason"] == "expired"


def test_bad_usage_exits_2(files):
    d, _ = files
    assert run_inspect(str(d / "valid.json"), "--descriptor", str(d / "missing.json")).returncode == 2
    assert run_inspect(str(d / "valid.json"), "--descriptor", str(d / "origin.json"), "--as", "nx").returncode == 2
    (d / "notjson.json").write_text("{nope")
    assert run_inspect(str(d / "notjson.json"), "--descriptor", str(d / "origin.json")).returncode == 2
    assert run_inspect().returncode == 2
