"""The shard store refuses truncated, altered, foreign and wrong-version files, naming them."""

import json

import pytest
import torch
from safetensors.torch import save_file

from showo_turbo.pipeline.shards import ShardError, ShardReader, ShardWriter


@pytest.fixture
def store(tmp_path):
    w = ShardWriter(tmp_path / "traj", "t2i", {"steps": 16})
    for i in range(3):
        w.append({"codes": torch.full((4, 8), i), "commit": torch.arange(32, dtype=torch.int8).view(4, 8)})
    w.finish(prompts=12)
    return tmp_path / "traj"


def test_round_trip(store):
    r = ShardReader(store, "t2i")
    assert len(r) == 3 and r.params == {"steps": 16} and r.manifest["counts"]["rows"] == 12
    assert [int(s["codes"][0, 0]) for s in r] == [0, 1, 2]


def test_truncated_shard_is_refused(store):
    p = store / "shard-00001.safetensors"
    p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(ShardError, match=r"shard-00001.safetensors: \d+ bytes, the manifest says \d+ \(truncated"):
        ShardReader(store, "t2i").load(1)


def test_flipped_bytes_are_refused(store):
    p = store / "shard-00002.safetensors"
    data = bytearray(p.read_bytes())
    data[-5] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(ShardError, match=r"shard-00002.safetensors: checksum mismatch \(the file was altered\); delete .* and rerun"):
        ShardReader(store, "t2i").load(2)


def test_wrong_version_is_refused(store):
    m = json.loads((store / "manifest.json").read_text())
    m["version"] = 99
    (store / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ShardError, match="format version 99, this code reads version 1"):
        ShardReader(store, "t2i")


def test_foreign_shard_with_matching_manifest_is_refused(store):
    """A safetensors file from elsewhere, with the manifest's size and checksum updated to match."""
    import hashlib
    p = store / "shard-00000.safetensors"
    save_file({"codes": torch.zeros(4, 8)}, str(p), metadata={"format": "something-else"})
    m = json.loads((store / "manifest.json").read_text())
    m["shards"][0].update(bytes=p.stat().st_size, sha256=hashlib.sha256(p.read_bytes()).hexdigest())
    (store / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ShardError, match="shard-00000.safetensors: header says format 'something-else'"):
        ShardReader(store, "t2i").load(0)


def test_wrong_kind_missing_and_incomplete(store, tmp_path):
    with pytest.raises(ShardError, match="holds 't2i' shards, expected 'mmu'"):
        ShardReader(store, "mmu")
    (store / "shard-00001.safetensors").unlink()
    with pytest.raises(ShardError, match="shard-00001.safetensors: missing"):
        ShardReader(store, "t2i").load(1)
    w = ShardWriter(tmp_path / "partial", "t2i", {"steps": 16})
    w.append({"codes": torch.zeros(2, 8)})
    with pytest.raises(ShardError, match="incomplete"):
        ShardReader(tmp_path / "partial", "t2i")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_text("{")
    with pytest.raises(ShardError, match="manifest.json: not valid JSON"):
        ShardReader(tmp_path / "bad", "t2i")


def test_writer_resumes_and_refuses_other_params(tmp_path):
    w = ShardWriter(tmp_path, "t2i", {"steps": 16})
    w.append({"codes": torch.zeros(2, 8)})
    again = ShardWriter(tmp_path, "t2i", {"steps": 16})
    assert again.rows == 2
    again.append({"codes": torch.ones(3, 8)})
    again.finish()
    assert ShardReader(tmp_path, "t2i").manifest["counts"]["rows"] == 5
    with pytest.raises(ShardError, match="written with other params"):
        ShardWriter(tmp_path, "t2i", {"steps": 8})
    restarted = ShardWriter(tmp_path, "t2i", {"steps": 8}, restart=True)
    assert restarted.rows == 0 and not list(tmp_path.glob("shard-*"))
    restarted.append({"codes": torch.ones(1, 8)})
    restarted.finish()
    assert ShardReader(tmp_path, "t2i").params == {"steps": 8}


def test_atomic_writes_get_normal_permissions_and_folders_swap_whole(tmp_path):
    from showo_turbo.pipeline.io import atomic_dir, write_safetensors
    plain = tmp_path / "plain"
    plain.write_text("x")
    write_safetensors({"a": torch.zeros(2)}, tmp_path / "t.safetensors", {"format": "test"})
    assert (tmp_path / "t.safetensors").stat().st_mode & 0o777 == plain.stat().st_mode & 0o777
    with atomic_dir(tmp_path / "ckpt") as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "ckpt") as tmp:
            (tmp / "a").write_text("2")
            raise RuntimeError("killed mid-write")
    assert (tmp_path / "ckpt" / "a").read_text() == "1" and not (tmp_path / "ckpt.tmp").exists()


def test_safetensors_writes_are_byte_stable_and_older_headers_still_read(tmp_path):
    """The same tensors and metadata give the same file every time (safetensors alone orders a
    header's metadata keys at random, so DVC saw a new output on every rerun); files written with
    plain metadata keys, as before, read back the same."""
    from showo_turbo.pipeline.io import read_safetensors, write_safetensors
    tensors = {"b": torch.arange(6).view(2, 3), "a": torch.ones(4)}
    meta = {"format": "test", "version": "1", "kind": "t2i", "index": "0", "rows": "2", "params": '{"x": 1}'}
    paths = [tmp_path / f"w{i}.safetensors" for i in range(6)]
    for p in paths:
        write_safetensors(tensors, p, meta)
    assert len({p.read_bytes() for p in paths}) == 1
    got, got_meta = read_safetensors(paths[0], ValueError)
    assert got_meta == meta and all(torch.equal(got[k], tensors[k]) for k in tensors)
    old = tmp_path / "old.safetensors"
    save_file(tensors, str(old), metadata=meta)
    assert read_safetensors(old, ValueError)[1] == meta
