"""`make bench`, second part: what hostile files cost, read alone and in a real build, and a build on a full disk.

Every file is generated here (tests/hostile.py builds the Word files). "Read" is
a fresh process that reads the one file as a build or an upload does
(read_document); "build" is `python -m assistant build` of the bundled corpus
plus that file. Peak RSS is each process's own VmHWM. Prints a Markdown table
and writes bench/results-hostile.json (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import CHILD, ENV, peak_mb  # noqa: E402  (bench/common.py)
from tests.conftest import CORPUS  # noqa: E402
from tests.hostile import (  # noqa: E402
    BODY_END,
    BODY_START,
    XML_HEAD,
    billion_laughs_docx,
    external_entity_docx,
    fill_disk,
    many_paragraphs_docx,
    paragraph,
    pdf_file,
    understated_docx,
    word_file,
    zip_bomb_docx,
)

READ = (
    "import atexit, sys, time\n"
    "atexit.register(lambda: print(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')), file=sys.stderr))\n"
    "from pathlib import Path\n"
    "from assistant.ingest.sources import SourceError, SourceFile, read_document\n"
    "import bs4, docx, lxml.html, pypdf, charset_normalizer, defusedxml.ElementTree\n"
    "path = Path(sys.argv[1])\n"
    "start = time.perf_counter()\n"
    "try:\n"
    "    doc = read_document(SourceFile(path, path.name, '', path.stat().st_size))\n"
    "    outcome = f'read: {len(doc.text):,} characters'\n"
    "except SourceError as exc:\n"
    "    outcome = str(exc).replace(path.name + ': ', '', 1)\n"
    "seconds = time.perf_counter() - start\n"
    "from assistant.ingest import sandbox; import resource\n"
    "sandbox.shutdown()  # the parsing children were waited for by the helper, the helper by us\n"
    "print(f'{seconds:.3f}')\n"
    "print(outcome)\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)\n"
)


def html_file(path: Path, body: Callable[[], str]) -> Path:
    path.write_text("<html><body>" + body() + "</body></html>", encoding="utf-8")
    return path


def pdf_bomb(path: Path, unpacked_mb: int) -> Path:
    """One page whose content stream inflates to unpacked_mb megabytes of text-showing operators."""
    content = zlib.compress(b"BT /F1 12 Tf 72 720 Td (Hei) Tj ET\n" * (unpacked_mb * 1_000_000 // 35), 9)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> /Contents 5 0 R >>",
        f"<< /Length {len(content)} /Filter /FlateDecode >>\nstream\n".encode() + content + b"\nendstream",
    ]
    path.write_bytes(pdf_file(objects))
    return path


def pdf_pages(path: Path, pages: int, content: bytes, shared: bool = False) -> Path:
    """A PDF of many pages: each with its own copy of one compressed content stream, or all sharing one."""
    packed = zlib.compress(content, 9)
    stream = f"<< /Length {len(packed)} /Filter /FlateDecode >>\nstream\n".encode() + packed + b"\nendstream"
    first_page = 4
    kids = " ".join(f"{first_page + (1 if shared else 2) * i} 0 R" for i in range(pages))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for i in range(pages):
        contents = first_page + pages if shared else first_page + 2 * i + 1
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
            + f"/Contents {contents} 0 R >>".encode()
        )
        if not shared:
            objects.append(stream)
    if shared:
        objects.append(stream)
    path.write_bytes(pdf_file(objects))
    return path


def inputs(work: Path, quick: bool) -> list[tuple[str, Path]]:
    """(description, file) for every hostile input, plus an ordinary Word file as the baseline."""
    sentence = "Kommunestyret i Bodø vedtok budsjettet for 2025 etter en lang debatt om skole og helse. "
    made = [
        ("ordinary .docx (baseline)", word_file(work / "vanlig.docx", [XML_HEAD, BODY_START, paragraph(sentence), BODY_END])),
        (".docx zip bomb, 300 MB of `<w:p/>`", zip_bomb_docx(work / "bombe-300.docx", 300)),
        (".docx, 6 MB of `<w:p/>` (680 to 1, under the size limit)", zip_bomb_docx(work / "tett.docx", 6)),
        (".docx whose zip directory says 1 kB for 60 MB", understated_docx(work / "logn.docx", 60)),
        (".docx with billion laughs (10^9 entity expansions)", billion_laughs_docx(work / "latter.docx")),
        (".docx with an external entity (XXE) to /etc/passwd", external_entity_docx(work / "xxe.docx", Path("/etc/passwd"))),
        (".docx, 230,000 empty paragraphs with random ids (parsed: just under the limit)", many_paragraphs_docx(work / "avsnitt-230k.docx", 230_000)),
        (".docx, 300,000 empty paragraphs with random ids", many_paragraphs_docx(work / "avsnitt-300k.docx", 300_000)),
        (".html nested 1,000,000 `<div>` deep (11 MB)", html_file(work / "dyp.html", lambda: "<div>" * 1_000_000 + "tekst" + "</div>" * 1_000_000)),
        (".html with 2,800,000 empty `<i>` (20 MB)", html_file(work / "bred.html", lambda: "<p>" + "<i></i>" * 2_800_000 + "</p>")),
        (".html with 95,000 empty `<i>` (parsed: under the limit)", html_file(work / "bred-95k.html", lambda: "<p>" + "<i></i>" * 95_000 + "tekst</p>")),
        (".pdf, one page inflating to 1 GB", pdf_bomb(work / "bombe.pdf", 1000)),
        (".pdf, 50 pages each inflating to 70 MB (the probe's 3.4 MB file)",
         pdf_pages(work / "sider-70mb.pdf", 50, b"BT /F1 12 Tf 72 720 Td (Hei) Tj ET\n" * 2_000_000)),
        (".pdf, 3 small pages of 4.9 MB of path operators each (about 2.4 million operators)",
         pdf_pages(work / "operatorer.pdf", 3, b"0 0 m\n" * 816_000)),
        (".pdf, 99,000 pages sharing one content stream", pdf_pages(work / "sider-99k.pdf", 99_000, b"BT /F1 12 Tf 72 720 Td (Hei) Tj ET\n", shared=True)),
        (".txt, 20 MB of random bytes", _write(work / "tilfeldig.txt", os.urandom(19_900_000))),
        (".txt, UTF-16 LE without BOM, 20 MB", _write(work / "utf16.txt", (sentence * 110_000).encode("utf-16-le"))),
        (".txt, one 2 MB line without a sentence end", _write(work / "linje.txt", ("ord " * 500_000).encode())),
        (".txt, 2 MB of one-word sentences on one line", _write(work / "ja.txt", ("Ja. " * 500_000).encode())),
    ]
    if not quick:
        made.insert(2, (".docx zip bomb, 1.2 GB of `<w:p/>` (the issue's)", zip_bomb_docx(work / "bombe-1200.docx", 1200)))
    return made


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def run(args: Sequence[str]) -> tuple[float, float, int, str, str]:
    """Wall seconds, peak RSS in MB, exit code, stdout and stderr of one child Python process."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", *args], cwd=ROOT, env={**os.environ, **ENV}, capture_output=True, text=True)
    return time.perf_counter() - start, peak_mb(proc.stderr), proc.returncode, proc.stdout, proc.stderr


def read_alone(path: Path) -> dict[str, object]:
    _, rss, code, out, err = run([READ, str(path)])
    if code:
        raise RuntimeError(f"reading {path.name} failed: {err[-500:]}")
    seconds, outcome, child_peak = out.splitlines()[:3]
    return {"read_s": float(seconds), "read_peak_mb": rss, "parser_peak_mb": float(child_peak), "outcome": outcome}


def build_with(work: Path, path: Path | None) -> dict[str, object]:
    sources = work / f"sources-{path.stem if path else 'corpus'}"
    shutil.copytree(CORPUS, sources)
    if path is not None:
        shutil.copy(path, sources / path.name)
    seconds, rss, code, out, err = run([CHILD, "build", "--json", "--sources", str(sources), "--index", str(sources) + "-index"])
    if code:
        raise RuntimeError(f"build with {path} failed: {err[-500:]}")
    shutil.rmtree(sources)
    return {"build_s": round(seconds, 2), "build_peak_mb": rss, "skipped": len(json.loads(out)["skipped"])}


HISTORY = (
    "import atexit, json, sys, time\n"
    "atexit.register(lambda: print(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')), file=sys.stderr))\n"
    "from assistant import Retriever, answer\n"
    "r = Retriever.load(sys.argv[1])\n"
    "answer('Hva krevde KS om SLT?', r)\n"
    "out = {}\n"
    "for label, question, history in [\n"
    "    ('a 1,000-character question', 'Hva krevde KS om SLT? ' * 46, []),\n"
    "    ('a 200,000-character history turn', 'Og hva med kostnadene?', ['y' * 200_000]),\n"
    "    ('a 1,000,000-character history turn', 'Og hva med kostnadene?', ['y' * 1_000_000]),\n"
    "    ('50 history turns of 100,000 words each', 'Og hva med kostnadene?', ['barnevernskostnadene ' * 5_000] * 50),\n"
    "]:\n"
    "    start = time.perf_counter(); answer(question, r, history=history); out[label] = round(time.perf_counter() - start, 3)\n"
    "print(json.dumps(out))\n"
)


def long_questions(work: Path) -> dict[str, object]:
    """Seconds for one answer with hostile question and history lengths, on the bundled corpus's index."""
    sources = work / "sources-history"
    shutil.copytree(CORPUS, sources)
    index = work / "index-history"
    run([CHILD, "build", "--sources", str(sources), "--index", str(index)])
    seconds, rss, code, out, err = run([HISTORY, str(index)])
    if code:
        raise RuntimeError(f"the history run failed: {err[-500:]}")
    return {"seconds": json.loads(out.splitlines()[-1]), "peak_mb": rss}


def full_disk(work: Path) -> dict[str, object]:
    """A build whose index folder is on a full 2 MB tmpfs: time to the error, and what the user sees."""
    point = work / "disk"
    point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(point)], capture_output=True, text=True)
    if mounted.returncode:
        return {"outcome": f"not measured: cannot mount a tmpfs ({mounted.stderr.strip()})"}
    try:
        sources = work / "sources-disk"
        shutil.copytree(CORPUS, sources)
        index = point / "index"
        seconds, rss, code, _, _ = run([CHILD, "build", "--sources", str(sources), "--index", str(index)])
        assert code == 0
        (sources / "nytt.md").write_text("# Nytt\n\nKommunestyret vedtok en ny svømmehall.\n", encoding="utf-8")
        results = {}
        for label, leave in (("no space left", 0), ("128 kB left", 128 * 1024)):
            filler = fill_disk(point, leave)
            seconds, rss, code, _, err = run([CHILD, "build", "--sources", str(sources), "--index", str(index)])
            filler.unlink()
            line = next(line for line in err.splitlines() if line.startswith("error:"))
            results[label] = {"build_s": round(seconds, 2), "build_peak_mb": rss, "exit": code, "outcome": line,
                              "traceback": "Traceback" in err}
        return results
    finally:
        subprocess.run(["umount", "--lazy", str(point)], check=False)


def table(results: dict[str, object]) -> str:
    lines = [
        "| Hostile input | file size | read alone: s / peak MB / parser's peak MB | build: s / peak MB | outcome |",
        "|---|---|---|---|---|",
    ]
    for row in results["inputs"]:
        build = f"{row['build_s']:.1f} / {row['build_peak_mb']:.0f}" if "build_s" in row else "–"
        lines.append(
            f"| {row['input']} | {row['bytes'] / 1e6:.2f} MB | {row['read_s']:.2f} / {row['read_peak_mb']:.0f} / "
            f"{row['parser_peak_mb']:.0f} "
            f"| {build} | {row['outcome'][:160]} |"
        )
    corpus = results["corpus_build"]
    lines.append(f"\nBuild of the bundled corpus alone: {corpus['build_s']:.1f} s, peak {corpus['build_peak_mb']:.0f} MB.")
    long = results["long_questions"]
    lines.append("One answer with " + "; ".join(f"{label}: {s:.3f} s" for label, s in long["seconds"].items())
                 + f" (process peak {long['peak_mb']:.0f} MB).")
    for label, row in results["full_disk"].items():
        if isinstance(row, dict):
            lines.append(f"Full disk ({label}): exit {row['exit']} after {row['build_s']:.1f} s, peak "
                         f"{row['build_peak_mb']:.0f} MB, traceback: {row['traceback']}; `{row['outcome']}`")
        else:
            lines.append(f"Full disk: {row}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="leave out the 1.2 GB bomb")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results-hostile.json")
    args = parser.parse_args(argv)
    results: dict[str, object] = {"load_average_at_start": [round(x, 2) for x in os.getloadavg()], "inputs": []}
    with tempfile.TemporaryDirectory(prefix="ks-hostile-") as tmp:
        work = Path(tmp)
        results["corpus_build"] = build_with(work, None)
        (work / "files").mkdir()
        for label, path in inputs(work / "files", args.quick):
            print(f"[hostile] {time.strftime('%H:%M:%S')} {label}", file=sys.stderr, flush=True)
            row: dict[str, object] = {"input": label, "bytes": path.stat().st_size, **read_alone(path)}
            if path.suffix == ".docx" or path.stem in ("linje", "ja", "sider-70mb", "operatorer"):
                row.update(build_with(work, path))
            results["inputs"].append(row)
            path.unlink()
        results["long_questions"] = long_questions(work)
        results["full_disk"] = full_disk(work)
    results["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(table(results))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
