"""The CLI as a user runs it: JSON shapes, human output, errors as one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from askdocs.cli import app

runner = CliRunner()


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, db: str) -> str:
    monkeypatch.setenv("ASKDOCS_MILVUS_URI", db)
    monkeypatch.setenv("ASKDOCS_EMBED_DEVICE", "cpu")
    return db


def test_ingest_search_json_shape_and_queries_file(cli_env: str, docs: Path, tmp_path: Path) -> None:
    res = runner.invoke(app, ["ingest", str(docs), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["added"] == 4 and report["chunks"] > 0

    query = "  Which lock does VACUUM FULL take?  "
    res = runner.invoke(app, ["search", query, "-k", "3", "--json", "--mode", "hybrid"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 1
    obj = json.loads(lines[0])
    assert obj["query"] == " ".join([query])  # exactly as given
    assert len(obj["results"]) == 3
    assert set(obj["results"][0]) == {"id", "score", "source", "title", "section", "text"}
    assert obj["results"][0]["source"] == "page.html"

    qfile = tmp_path / "q.jsonl"
    qfile.write_text(
        json.dumps({"question": "What is efConstruction?"}) + "\n\n" + json.dumps({"question": "analyzer"}) + "\n"
    )
    res = runner.invoke(app, ["search", "--queries", str(qfile), "--json", "-k", "2"])
    assert res.exit_code == 0, res.output
    objs = [json.loads(x) for x in res.stdout.strip().splitlines()]
    assert [o["query"] for o in objs] == ["What is efConstruction?", "analyzer"]
    assert objs[0]["results"][0]["source"] == "guide/hnsw.md"

    plain = tmp_path / "q.txt"
    plain.write_text("HNSW graph\nVACUUM\n")
    res = runner.invoke(app, ["search", "--queries", str(plain), "--json", "--mode", "bm25"])
    assert [json.loads(x)["query"] for x in res.stdout.strip().splitlines()] == ["HNSW graph", "VACUUM"]


def test_human_output_and_status(cli_env: str, docs: Path) -> None:
    runner.invoke(app, ["ingest", str(docs), "--quiet"])
    res = runner.invoke(app, ["search", "HNSW", "parameters", "-k", "2"])
    assert res.exit_code == 0
    assert "guide/hnsw.md" in res.stdout and "HNSW parameters" in res.stdout
    res = runner.invoke(app, ["status"])
    assert res.exit_code == 0
    assert "all-MiniLM-L6-v2" in res.stdout and "384" in res.stdout
    assert "512 chars, 51 overlap" in res.stdout and "|" not in res.stdout  # readable, not the fingerprint
    st = json.loads(runner.invoke(app, ["status", "--json"]).stdout)
    assert st["documents"] == 4 and st["exists"] is True
    res = runner.invoke(app, ["documents", "--json"])
    assert {json.loads(x)["source"] for x in res.stdout.splitlines()} == {
        "guide/hnsw.md",
        "page.html",
        "notes.txt",
        "intro.rst",
    }


def test_errors_are_one_line_without_traceback(cli_env: str, docs: Path, tmp_path: Path) -> None:
    res = runner.invoke(app, ["search", "anything"])
    assert res.exit_code == 1
    assert "does not exist yet" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["search", "x", "--mode", "fuzzy"])
    assert res.exit_code == 1 and "--mode" in res.output
    res = runner.invoke(app, ["ingest", str(tmp_path / "missing-folder")])
    assert res.exit_code == 1 and "matched no file" in res.output
    res = runner.invoke(app, ["ingest", str(docs), "--chunk-size", "50", "--chunk-overlap", "60"])
    assert res.exit_code == 1 and "chunk_overlap" in res.output
    res = runner.invoke(app, ["search", "x", "--uri", str(tmp_path / "no" / "such" / "dir.db")])
    assert res.exit_code == 1 and "does not exist" in res.output


def test_ingest_makes_the_index_folder(cli_env: str, docs: Path, tmp_path: Path) -> None:
    """`--uri data/docs.db` in a new project: ingest makes the folder (a search there still says it is missing)."""
    uri = tmp_path / "new" / "project" / "docs.db"
    res = runner.invoke(app, ["ingest", str(docs), "--uri", str(uri)])
    assert res.exit_code == 0, res.output
    assert uri.is_file()
    res = runner.invoke(app, ["documents", "--uri", str(uri), "--json"])
    assert res.exit_code == 0 and "guide/hnsw.md" in res.stdout, res.output


def test_an_index_under_a_file_is_refused_plainly(cli_env: str, docs: Path, tmp_path: Path) -> None:
    (tmp_path / "notes").write_text("a file, not a folder")
    res = runner.invoke(app, ["ingest", str(docs), "--uri", str(tmp_path / "notes" / "docs.db")])
    assert res.exit_code == 1 and "is a file, not a folder" in res.output, res.output
    assert "another process" not in res.output


def test_console_script_end_to_end(tmp_path: Path, docs: Path) -> None:
    """The installed entry point, as a separate process: summary on stderr, results on stdout."""
    env = {**os.environ, "ASKDOCS_MILVUS_URI": str(tmp_path / "cli.db")}
    exe = [sys.executable, "-m", "askdocs.cli"]
    ing = subprocess.run([*exe, "ingest", str(docs)], capture_output=True, text=True, env=env, timeout=300)
    assert ing.returncode == 0, ing.stderr
    assert "4 added, 0 updated, 0 unchanged, 0 removed, 0 failed" in ing.stderr
    assert "Traceback" not in ing.stderr
    again = subprocess.run([*exe, "ingest", str(docs)], capture_output=True, text=True, env=env, timeout=300)
    assert "0 added, 0 updated, 4 unchanged" in again.stderr and "0 chunks written" in again.stderr
    res = subprocess.run(
        [*exe, "search", "--json", "-k", "1", "VACUUM FULL lock"], capture_output=True, text=True, env=env, timeout=300
    )
    assert json.loads(res.stdout)["results"][0]["source"] == "page.html"


def test_progress_bar_on_a_terminal_and_silent_otherwise(tmp_path: Path, docs: Path) -> None:
    """stderr on a pseudo-terminal shows each stage: the model loading, a bar of chunks embedded, the flush;
    under --quiet nothing at all, and under --json stdout is the report alone and stderr stays empty."""
    import pty
    import re

    env = {**os.environ, "ASKDOCS_MILVUS_URI": str(tmp_path / "tty.db"), "COLUMNS": "160"}
    exe = [sys.executable, "-m", "askdocs.cli", "ingest", str(docs)]

    def run_on_pty(args: list[str], **more: str) -> tuple[str, str]:
        """(stdout, what the terminal on stderr received)"""
        master, slave = pty.openpty()
        proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, env={**env, **more}
        )
        os.close(slave)
        chunks = []
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        stdout = proc.communicate(timeout=300)[0]
        os.close(master)
        assert proc.returncode == 0, b"".join(chunks)
        return stdout.decode(), re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(chunks).decode(errors="replace"))

    _, shown = run_on_pty(exe)
    assert "Loading embedding model" in shown and "all-MiniLM-L6-v2" in shown
    assert re.search(r"embedding\b.*?\d+/\d+ chunks", shown), shown  # its own bar, counting chunks
    assert "Flushing" in shown and re.search(r"\d+/4 files", shown)
    assert shown.index("Loading embedding model") < shown.index("Flushing")
    assert "4 added" in shown  # and the summary
    _, again = run_on_pty(exe)  # nothing changed: no model to load, nothing to flush
    assert "0 added, 0 updated, 4 unchanged" in again and "Loading" not in again and "Flushing" not in again
    _, quiet = run_on_pty([*exe, "--quiet"], ASKDOCS_MILVUS_URI=str(tmp_path / "quiet.db"))
    assert quiet.strip() == ""
    stdout, tty = run_on_pty([*exe, "--json"], ASKDOCS_MILVUS_URI=str(tmp_path / "json.db"))
    assert json.loads(stdout)["added"] == 4 and tty.strip() == ""


def test_unreachable_server_is_one_clear_line(tmp_path: Path) -> None:
    res = runner.invoke(app, ["status", "--uri", "http://127.0.0.1:9"])
    assert res.exit_code == 1
    assert "cannot reach Milvus at http://127.0.0.1:9" in res.output and "Traceback" not in res.output
    (tmp_path / "a.md").write_text("# A\n\nSome text.\n")
    # a real process: pymilvus's log handler writes to the stderr it found at import, which CliRunner can't see
    out = subprocess.run(
        [sys.executable, "-m", "askdocs.cli", "ingest", str(tmp_path), "--uri", "http://127.0.0.1:9"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    said = out.stdout + out.stderr
    assert out.returncode == 1 and "cannot reach Milvus at http://127.0.0.1:9" in said
    # nothing was written, so no advice to 'run it again to finish' a run that never started
    assert "Nothing was written." in said and "run it again" not in said, said
    assert "?." not in said and "Failed to create new connection" not in said  # pymilvus's own log line


def test_bad_settings_are_one_line_errors(cli_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No pydantic report, no pymilvus text: one line that names the setting or the file."""
    monkeypatch.chdir(tmp_path)

    def error(*args: str) -> str:
        res = runner.invoke(app, list(args))
        assert res.exit_code == 1, res.output
        lines = [line for line in res.output.splitlines() if line.strip()]
        assert len(lines) == 1 and "pydantic" not in lines[0], res.output
        return lines[0]

    assert "top_k (ASKDOCS_TOP_K): must be >= 1, got 0" in error("search", "-k", "0", "hi")
    monkeypatch.setenv("ASKDOCS_TOP_K", "lots")
    assert "top_k (ASKDOCS_TOP_K): must be a valid integer" in error("search", "hi")
    monkeypatch.delenv("ASKDOCS_TOP_K")
    assert "must be a Milvus Lite file ending in .db" in error("status", "--uri", "milvus.local")
    (tmp_path / "askdocs.toml").write_text("top_k = \n")
    assert error("search", "hi").startswith("error: askdocs.toml: not valid TOML")
    (tmp_path / "askdocs.toml").write_text("topk = 3\n")
    assert "askdocs.toml: unknown setting 'topk' (did you mean 'top_k'?)" in error("search", "hi")
    (tmp_path / "askdocs.toml").unlink()
    assert "does not exist yet" in error("documents")


def test_version_help_defaults_and_any_case_modes(cli_env: str, docs: Path) -> None:
    from importlib.metadata import version

    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"askdocs {version('askdocs')}"
    res = runner.invoke(app, ["search", "--help"], env={"COLUMNS": "200"})
    assert "[env: ASKDOCS_TOP_K] [default: 5]" in res.output and "[default: hybrid]" in res.output
    for command in ("ingest", "search", "ask", "chat", "serve", "eval", "mcp"):  # no pydantic internals shown
        res = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
        assert res.exit_code == 0 and "Undefined" not in res.output, (command, res.output)
    assert runner.invoke(app, ["ingest", str(docs), "-q"]).exit_code == 0
    res = runner.invoke(app, ["search", "--mode", "BM25", "--json", "-k", "1", "HNSW graph"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["results"][0]["source"] == "guide/hnsw.md"
    res = runner.invoke(app, ["documents"], env={"COLUMNS": "40"})  # a narrow terminal still shows whole paths
    assert res.exit_code == 0 and "guide/hnsw.md" in res.output.replace("\n", "").replace("│", "").replace(" ", "")


def test_ask_refuses_an_empty_collection_before_loading_an_llm(cli_env: str, docs: Path) -> None:
    assert runner.invoke(app, ["ingest", str(docs / "notes.txt"), "-q"]).exit_code == 0
    assert runner.invoke(app, ["delete", "notes.txt"]).exit_code == 0
    for backend in ("none", "vllm"):  # the refusal comes before any LLM is loaded (no GPU here for vllm)
        res = runner.invoke(app, ["ask", "--llm-backend", backend, "what is HNSW?"])
        assert res.exit_code == 1 and "is empty: there is nothing to answer from" in res.output, res.output


def test_chat_on_a_terminal_has_line_editing_and_history(cli_env: str, docs: Path, tmp_path: Path) -> None:
    """A real pseudo-terminal: the up arrow brings the last question back, and the history outlives the session."""
    import pty
    import select
    import time

    assert runner.invoke(app, ["ingest", str(docs), "-q"]).exit_code == 0
    env = {**os.environ, "ASKDOCS_CACHE": str(tmp_path / "cache"), "TERM": "xterm", "COLUMNS": "120"}

    def session(keys: list[bytes]) -> str:
        pid, fd = pty.fork()
        if pid == 0:  # the child: askdocs chat on the terminal
            os.execve(sys.executable, [sys.executable, "-m", "askdocs.cli", "chat", "--llm-backend", "none"], env)
        out, deadline = b"", time.time() + 120
        pending = list(keys)
        while time.time() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
            elif pending and out.count(b"? ") > len(keys) - len(pending):  # at the prompt: type the next line
                os.write(fd, pending.pop(0))
        os.waitpid(pid, 0)
        return out.decode(errors="replace")

    first = session([b"HNSW graph parameters\r", b"\x1b[A\r", b"\r"])  # ask; recall it with the up arrow; end
    assert first.count("guide/hnsw.md") >= 2, first  # the recalled question was asked again
    assert (tmp_path / "cache" / "chat_history").read_text().strip().endswith("HNSW graph parameters")
    second = session([b"\x1b[A\r", b"\r"])  # a new session remembers the last one's question
    assert "guide/hnsw.md" in second, second


def test_failed_file_names_print_escaped(cli_env: str, tmp_path: Path) -> None:
    """A newline in a file name must not forge a line of the summary, nor "[...]" act as markup."""
    root = tmp_path / "odd"
    root.mkdir()
    (root / "good.md").write_text("# Good\n\nThe pangolin is found.\n", encoding="utf-8")
    (root / "bad\nskipped forged.md [bold]x.md").write_bytes(bytes(range(256)) * 8)
    res = runner.invoke(app, ["ingest", str(root)])
    assert res.exit_code == 0, res.output
    lines = res.stderr.splitlines()
    assert [line for line in lines if line.startswith("skipped")] == [
        f"skipped {root}/bad\\nskipped forged.md [bold]x.md: binary content (NUL bytes), not text"
    ]
    assert not any(line.startswith("skipped forged") for line in lines)


def test_soup_and_unclosed_comment_beside_good_files(cli_env: str, tmp_path: Path) -> None:
    """Issue 12's Done-when: 1 MB of bracket soup and 1 MB of unclosed comments ingest beside good files.

    Before, cleaning was linear but the soup still made 2,622 chunks and the comment file 2,289, whose
    embedding took minutes; now both are reported as having no text, and only the good files' chunks
    are embedded.
    """
    root = tmp_path / "d"
    root.mkdir()
    s = b"[[[[((((" * 131072  # the report's reproduction, 80-character lines
    (root / "soup.md").write_bytes(b"\n".join(s[i : i + 80] for i in range(0, len(s), 80)))
    (root / "comment.md").write_bytes(b"<!-- x " * 149797)
    (root / "a.md").write_text("# Pangolins\n\nThe pangolin is a scaly mammal that eats ants.\n")
    (root / "b.md").write_text("# Vacuum\n\nVACUUM FULL takes an ACCESS EXCLUSIVE lock.\n")
    res = runner.invoke(app, ["ingest", str(root), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["added"] == 2 and report["chunks"] == 2
    assert sorted(Path(f["path"]).name for f in report["failures"]) == ["comment.md", "soup.md"]
    assert all("no text" in f["reason"] for f in report["failures"])
    res = runner.invoke(app, ["search", "scaly mammal", "--json", "-k", "1"])
    assert json.loads(res.stdout)["results"][0]["source"] == "a.md"


def test_same_file_name_in_two_folders_is_shown_and_deleted_by_name(cli_env: str, tmp_path: Path) -> None:
    for name, word in (("colA", "aardvark"), ("colB", "badger")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "readme.md").write_text(f"# Readme\n\nThe {word} ledger lists every release.\n")
        assert runner.invoke(app, ["ingest", str(tmp_path / name), "--quiet"]).exit_code == 0
    res = runner.invoke(app, ["documents", "--json"])
    assert sorted(json.loads(x)["source"] for x in res.stdout.splitlines()) == ["colA/readme.md", "colB/readme.md"]
    res = runner.invoke(app, ["search", "ledger release", "--json", "--mode", "bm25"])
    assert sorted(r["source"] for r in json.loads(res.stdout)["results"]) == ["colA/readme.md", "colB/readme.md"]
    res = runner.invoke(app, ["delete", "readme.md"])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert (
        len(res.output.strip().splitlines()) == 1 and "colA/readme.md" in res.output and "colB/readme.md" in res.output
    )
    res = runner.invoke(app, ["delete", "colA/readme.md"])
    assert res.exit_code == 0 and "deleted colA/readme.md" in res.output
    res = runner.invoke(app, ["documents", "--json"])
    assert [json.loads(x)["source"] for x in res.stdout.splitlines()] == ["readme.md"]
