"""The CLI through click's CliRunner: output shapes, --json, exit codes."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from searchengine.cli import cli


def run(*args, env=None):
    result = CliRunner().invoke(cli, [str(a) for a in args], env=env)
    return result


@pytest.fixture
def indexed(index_dir, tiny_bundle, media_dir):
    result = run("index", media_dir, "--index", index_dir, "--bundle", tiny_bundle, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_index_json_summary(indexed):
    assert set(indexed) >= {"added", "updated", "removed", "unchanged", "skipped"}
    assert (indexed["added"], indexed["skipped"]) == (6, [])


def test_index_reports_skips_as_path_and_reason(index_dir, tiny_bundle, media_dir):
    (media_dir / "broken.jpg").write_bytes(b"\xff\xd8 nope")
    result = run("index", media_dir, "--index", index_dir, "--bundle", tiny_bundle, "--json")
    data = json.loads(result.output)
    assert result.exit_code == 0
    assert data["skipped"] == [{"path": str(media_dir / "broken.jpg"), "reason": data["skipped"][0]["reason"]}]
    assert "not a readable image" in data["skipped"][0]["reason"]


def test_index_text_summary(index_dir, tiny_bundle, media_dir):
    result = run("index", media_dir, "--index", index_dir, "--bundle", tiny_bundle)
    assert result.exit_code == 0 and "added 6, updated 0, removed 0, unchanged 0, skipped 0" in result.output


@pytest.mark.parametrize("flag,value,kind", [("--audio", "voice/clip0.wav", "image"),
                                             ("--image", "photos/a.png", "audio"),
                                             ("--text", "a red apple", "any")])
def test_search_json_shape(indexed, index_dir, media_dir, flag, value, kind):
    query = value if flag == "--text" else media_dir / value
    result = run("search", flag, query, "--kind", kind, "-k", 4, "--index", index_dir, "--json")
    assert result.exit_code == 0, result.output
    hits = json.loads(result.output)["hits"]
    assert 0 < len(hits) <= 4
    assert all(h["path"].startswith("/") and h["kind"] in ("image", "audio") for h in hits)
    assert all(isinstance(h["score"], float) for h in hits)
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    if kind != "any":
        assert {h["kind"] for h in hits} == {kind}


def test_search_table(indexed, index_dir, media_dir):
    result = run("search", "--image", media_dir / "photos" / "a.png", "--index", index_dir)
    lines = result.output.splitlines()
    assert result.exit_code == 0 and lines[0].split() == ["#", "score", "cosine", "kind", "path"]
    assert lines[1].split()[0] == "1" and lines[1].endswith("a.png")


def test_index_location_from_environment(tiny_bundle, media_dir, tmp_path):
    env = {"SEARCHENGINE_INDEX": str(tmp_path / "env-index")}
    assert run("index", media_dir, "--bundle", tiny_bundle, env=env).exit_code == 0
    status = json.loads(run("status", "--json", env=env).output)
    assert status["path"] == str(tmp_path / "env-index") and status["files"] == {"image": 3, "audio": 3}


def test_status_json(indexed, index_dir):
    status = json.loads(run("status", "--index", index_dir, "--json").output)
    assert status["bundle"]["name"] == "tiny" and status["bundle"]["dim"] == 16
    assert status["vectors"] == {"image": 3, "audio": 3}
    assert "Flat" in status["index_type"] and status["index_bytes"] > 0


def test_usage_errors_exit_2(indexed, index_dir, media_dir):
    assert run("search", "--index", index_dir).exit_code == 2
    assert run("search", "--text", "a", "--image", media_dir / "photos" / "a.png", "--index", index_dir).exit_code == 2
    assert run("search", "--text", "a", "--kind", "video", "--index", index_dir).exit_code == 2
    assert run("search", "--audio", "/no/such.wav", "--index", index_dir).exit_code == 2


def test_bundle_mismatch_exit_3(indexed, index_dir, media_dir, other_bundle):
    result = run("index", media_dir, "--index", index_dir, "--bundle", other_bundle)
    assert result.exit_code == 3 and "--rebuild" in result.output
    result = run("index", media_dir, "--index", index_dir, "--bundle", other_bundle, "--rebuild", "--json")
    assert result.exit_code == 0 and json.loads(result.output)["added"] == 6


def test_unknown_bundle_exit_1(index_dir, media_dir):
    result = run("index", media_dir, "--index", index_dir, "--bundle", "no-such-bundle")
    assert result.exit_code == 1 and "no bundle named 'no-such-bundle'" in result.output


def test_missing_weights_exit_4_at_once(index_dir, media_dir, tmp_path):
    env = {"HF_HUB_OFFLINE": "1", "SEARCHENGINE_CLIP_WEIGHTS": "", "SEARCHENGINE_WHISPER_MODEL": str(tmp_path)}
    result = run("index", media_dir, "--index", index_dir, "--bundle", "clip-whisper", env=env)
    assert result.exit_code == 4
    assert "SEARCHENGINE_CLIP_WEIGHTS" in result.output and "SEARCHENGINE_WHISPER_MODEL" in result.output


def test_undecodable_query_exit_1(indexed, index_dir, tmp_path):
    (tmp_path / "q.png").write_bytes(b"not a png")
    result = run("search", "--image", tmp_path / "q.png", "--index", index_dir)
    assert result.exit_code == 1 and "not a readable image" in result.output


def test_bundles_lists_registry():
    data = json.loads(run("bundles", "--json").output)
    assert {"clip-whisper", "stamp-scenes-small"} <= {b["name"] for b in data["bundles"]}


def test_every_command_has_help():
    for name, command in cli.commands.items():
        assert command.help, name
        assert run(name, "--help").exit_code == 0


def test_search_and_status_refuse_a_missing_index(tmp_path):
    for args in (("status",), ("search", "--text", "a dog")):
        result = run(*args, "--index", tmp_path / "nothing-here")
        assert result.exit_code == 1 and "no index at" in result.output
        assert not (tmp_path / "nothing-here").exists()
