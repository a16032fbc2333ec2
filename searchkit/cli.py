"""The ``searchkit`` command line: a thin layer over the library.

Each command parses its options, calls one library function and prints the result.
Errors a user can fix print one line on stderr and exit with status 2; an ingest that
skipped some inputs exits with status 1 after listing them.

Commands that do not embed (``info``, ``delete``, ``reindex``, ``search --mode lexical``,
``--help``) never import torch: the embedder reads the model's identity from its files
and loads the model on first use. Modules only some commands need (evaluation, QA, training, the HTTP client) are imported
by those commands, so ``info`` and ``search`` start quickly. Text read from an index is printed through
:func:`printable`, so a document cannot drive the terminal with escape sequences;
``--json`` output is exact.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from typer.core import TyperArgument, TyperCommand

from searchkit.config import ChunkingConfig
from searchkit.embedding import Embedder, load_embedder
from searchkit.errors import ConfigError, SearchkitError
from searchkit.index import Hit, Index
from searchkit.ingest import BATCH_CHARS, DEFAULT_MAX_DOCUMENT_CHARS, IngestReport
from searchkit.retrieval import Fusion, Mode
from searchkit.sources import CSV_TYPES, FieldMap, SourceOptions, Sources

if TYPE_CHECKING:
    from searchkit.reader import Reader

__all__ = ["app", "main", "printable"]

EXIT_SKIPPED = 1
EXIT_ERROR = 2

F = TypeVar("F", bound=Callable[..., Any])


class _Argument(TyperArgument):
    """A positional argument shown by its metavar alone: ``PATH...``, not ``{paths}... <list[Path]>``."""

    def get_usage_pieces(self, ctx: Any) -> list[str]:
        name = self.metavar or (self.name or "").upper()
        if self.nargs != 1 and not name.endswith("..."):
            name += "..."
        return [name if self.required else f"[{name}]"]

    def display_type_rich(self, ctx: Any) -> str | None:
        return None


class _Command(TyperCommand):
    """Typer has no hook for an argument's class, so each command swaps its arguments' in."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if type(param) is TyperArgument:
                param.__class__ = _Argument


app = typer.Typer(
    name="searchkit",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help: rich markup would swallow the "[default: ...]" the help texts spell out.
    rich_markup_mode=None,
)


def command(name: str) -> Callable[[F], F]:
    return app.command(name, cls=_Command)


def show_version(value: bool) -> None:
    if value:
        from searchkit import __version__

        typer.echo(f"searchkit {__version__}")
        raise typer.Exit()


@app.callback()
def searchkit(
    version: Annotated[
        bool, typer.Option("--version", callback=show_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Local-first semantic search: index a folder of documents, search it by meaning."""


IndexOption = Annotated[Path, typer.Option("--index", "-i", metavar="DIR", help="Index directory.", show_default=False)]
ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model", "-m", metavar="NAME",
        help="sentence-transformers model name or folder [default: all-MiniLM-L6-v2, or the index's own model].",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
PrecisionOption = Annotated[
    str,
    typer.Option(
        "--precision", metavar="auto|fp32|bf16",
        help="Arithmetic of the embedding model. auto: measured once on this machine, bf16 for passages where the "
        "CPU runs it fast, the fastest encoder that agrees with fp32 for queries. A new index records it; an "
        "existing one keeps embedding documents as it was built, and this sets how queries are encoded.",
    ),
]
WaitOption = Annotated[
    float,
    typer.Option(
        "--wait", metavar="SECONDS", min=0, show_default=False,
        help="Wait up to this long for another writer to finish [default: 0, fail at once when the index is locked].",
    ),
]
WhereOption = Annotated[
    list[str] | None,
    typer.Option(
        metavar="CONDITION",
        help="Metadata condition such as 'year>=2020', 'topic=nlp' or 'lang in en,de' (repeatable; all must hold).",
    ),
]
ReaderOption = Annotated[
    str | None,
    typer.Option(
        "--reader", envvar="SEARCHKIT_READER", metavar="NAME",
        help="QA reader: 'phrase' (default, offline: the best sentence narrowed to the words that answer), "
        "'sentence' (the whole sentence), a folder written by train-reader, or any transformers QA model.",
    ),
]
# Left out, a search ranks as the index's search settings say (dense and weighted unless `searchkit tune` chose others).
ModeOption = Annotated[
    Mode | None,
    typer.Option("--mode", help="dense: by meaning; lexical: BM25 over words; hybrid: both fused. [default: the index's setting]"),
]
FusionOption = Annotated[
    Fusion | None,
    typer.Option("--fusion", help="How hybrid fuses the rankings: weighted normalised scores, or rrf. [default: the index's setting]"),
]
ServerOption = Annotated[
    str | None,
    typer.Option(
        "--server", metavar="URL",
        help="Ask a running `searchkit serve` (such as http://127.0.0.1:8000) instead of opening an index here.",
    ),
]
SearchIndexOption = Annotated[
    Path | None,
    typer.Option("--index", "-i", metavar="DIR", help="Index directory (or --server URL).", show_default=False),
]

# Terminal control: OSC (to BEL or ST), CSI, any other escape, and C0/C1 controls but tab and newline.
_CONTROL = re.compile(r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-_]?|[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(value: object) -> str:
    """``value`` as text that cannot drive the terminal: escape sequences and control characters removed."""
    return _CONTROL.sub("", str(value))


def fail(message: str) -> typer.Exit:
    typer.secho(f"error: {printable(message)}", err=True, fg=typer.colors.RED)
    return typer.Exit(EXIT_ERROR)


def user_errors(command: F) -> F:
    """Turn the errors a user can fix into a one-line message instead of a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except SearchkitError as exc:
            raise fail(str(exc)) from None
        except KeyboardInterrupt:
            raise fail("interrupted; everything committed so far is kept, run the command again to finish") from None

    return wrapper  # type: ignore[return-value]


@command("index")
@user_errors
def index_command(
    paths: Annotated[
        list[Path],
        typer.Argument(metavar="PATH...", help="Files or directories to index (.txt, .md, .jsonl, .csv).", show_default=False),
    ],
    index: IndexOption,
    model: ModelOption = None,
    precision: PrecisionOption = "auto",
    include: Annotated[
        list[str] | None, typer.Option(metavar="GLOB", help="Glob of file names to read in directories (repeatable).")
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option(metavar="GLOB", help="Glob of file or folder names to skip (repeatable) [default: .*]."),
    ] = None,
    id_field: Annotated[
        str | None, typer.Option(metavar="FIELD", help="JSONL/CSV field holding the document id [default: id, _id, doc_id].")
    ] = None,
    title_field: Annotated[
        str | None, typer.Option(metavar="FIELD", help="JSONL/CSV field holding the title [default: title, name].")
    ] = None,
    text_field: Annotated[
        str | None, typer.Option(metavar="FIELD", help="JSONL/CSV field holding the text [default: text, body, content].")
    ] = None,
    csv_types: Annotated[
        str | None,
        typer.Option(
            metavar="COLUMN=TYPE,...",
            help=f"Types of CSV columns, such as 'year=int,date=date' ({', '.join(CSV_TYPES)}) [default: guessed from the values].",
        ),
    ] = None,
    chunk_tokens: Annotated[
        int | None,
        typer.Option(min=3, help="Chunk size in word pieces, for a new index [default: from the model, 254 for all-MiniLM-L6-v2]."),
    ] = None,
    overlap: Annotated[
        int | None, typer.Option(min=0, help="Word pieces shared by consecutive chunks, for a new index [default: 32].")
    ] = None,
    max_chunks: Annotated[
        int | None,
        typer.Option(min=0, help="Chunks kept per document, 0 for all; 1 embeds only the opening window; for a new index [default: 0]."),
    ] = None,
    max_doc_chars: Annotated[int, typer.Option(min=1, help="Skip (and report) documents longer than this.")] = DEFAULT_MAX_DOCUMENT_CHARS,
    batch_chars: Annotated[int, typer.Option(min=1, help="Characters of text embedded and committed per batch.")] = BATCH_CHARS,
    prune: Annotated[
        bool, typer.Option("--prune", help="Remove indexed documents whose file or record under PATH... is gone.")
    ] = False,
    wait: WaitOption = 0.0,
    as_json: JsonOption = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray", metavar="auto|ADDRESS",
            help="Embed on a Ray cluster (pip install 'searchkit[ray]'): an address (head:6379) joins a cluster, 'auto' "
            "joins $RAY_ADDRESS or this machine's cluster, else starts a local Ray runtime; reading, chunking and writing stay here.",
        ),
    ] = None,
    ray_actors: Annotated[
        int | None,
        typer.Option(min=1, help="Embedding workers (one model each) on the cluster, with --ray [default: one per GPU, else one per 2 CPUs]."),
    ] = None,
    ray_batch_size: Annotated[int, typer.Option(min=1, help="Texts per Ray Data batch a worker embeds, with --ray.")] = 64,
    ray_gpus: Annotated[
        float | None,
        typer.Option(min=0, help="GPUs each embedding worker holds, with --ray [default: 1 if the cluster has GPUs, else 0]."),
    ] = None,
) -> None:
    """Add documents to an index (created if needed); unchanged documents are skipped.

    Documents are read as they are embedded, so a corpus of any size takes the memory of
    one batch. Chunking options apply when the index is created; an existing index keeps
    its own, and a different value is an error. With --ray, embedding runs on a Ray
    cluster and the vectors are committed here batch by batch, exactly as without it.
    """
    options = SourceOptions(
        include=tuple(include) if include else SourceOptions.include,
        exclude=tuple(exclude) if exclude else SourceOptions.exclude,
        fields=FieldMap.of(id=id_field, title=title_field, text=text_field),
        csv_types=parse_csv_types(csv_types),
        id_root=Path.cwd(),
    )
    check_inputs(paths)
    chunking = {
        key: value
        for key, value in (("max_tokens", chunk_tokens), ("overlap_tokens", overlap), ("max_chunks", max_chunks))
        if value is not None
    }
    with Index.open_or_create(
        index, model=model, chunking=chunking or None, lock_timeout=wait, precision=precision
    ) as opened:
        embedder = None
        if ray is not None:
            from searchkit.distributed.embedding import ray_embedder
            from searchkit.distributed.runtime import connect

            connect(ray)
            embedder = ray_embedder(opened.embedder, actors=ray_actors, batch_size=ray_batch_size, gpus=ray_gpus)
        report = opened.add(
            Sources(paths, options), progress=not quiet and not as_json, max_document_chars=max_doc_chars,
            batch_chars=batch_chars, prune=prune, embedder=embedder,
        )
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        print_ingest_report(report, index)
    if report.failed:
        raise typer.Exit(EXIT_SKIPPED)


def parse_csv_types(text: str | None) -> dict[str, str]:
    """``'year=int,date=date'`` as ``{"year": "int", "date": "date"}``; the types are checked by SourceOptions."""
    types: dict[str, str] = {}
    for part in filter(str.strip, (text or "").split(",")):
        column, equals, kind = part.partition("=")
        if not equals or not column.strip() or not kind.strip():
            raise ConfigError(f"--csv-types takes COLUMN=TYPE pairs separated by commas, such as 'year=int,date=date'; got {text!r}")
        types[column.strip()] = kind.strip().lower()
    return types


def check_inputs(paths: list[Path]) -> None:
    """Refuse, before an index is created, paths of which none exists: a typo, not an empty corpus."""
    if not any(path.exists() for path in paths):
        raise ConfigError(f"no such file or directory: {', '.join(map(str, paths))}; nothing was indexed")


def cli_wording(message: object) -> str:
    """A library message with its Python keyword names replaced by this CLI's option names."""
    return printable(message).replace("max_document_chars", "--max-doc-chars")


def print_ingest_report(report: IngestReport, index: Path) -> None:
    for problem in report.failed:
        typer.secho(f"skipped {cli_wording(problem)}", err=True, fg=typer.colors.YELLOW)
    for warning in report.warnings:
        typer.secho(f"warning: {cli_wording(warning)}", err=True, fg=typer.colors.YELLOW)
    typer.echo(
        f"{printable(index)}: {report.added} added, {report.updated} updated, {report.unchanged} unchanged, "
        f"{report.pruned} pruned, {len(report.failed)} failed; "
        f"{report.chunks_added} chunks embedded, {report.chunks_removed} removed"
    )
    if report.skipped_files:
        counts = sorted(report.skipped_files.items(), key=lambda item: (-item[1], item[0]))
        kinds = ", ".join(f"{printable(suffix) or 'no suffix'} {count}" for suffix, count in counts)
        typer.echo(f"skipped {sum(report.skipped_files.values())} files of other types ({kinds})")
    if report.chunks_added:
        typer.echo(
            f"{report.seconds:.1f} s in all, {report.documents_per_second:.1f} documents/s, "
            f"embedding {report.chunks_per_second:.1f} chunks/s"
        )


@command("search")
@user_errors
def search_command(
    query: Annotated[str, typer.Argument(metavar="QUERY", help="What to search for, in plain words.", show_default=False)],
    index: SearchIndexOption = None,
    k: Annotated[int, typer.Option("-k", "--k", min=1, help="Number of hits.")] = 10,
    where: WhereOption = None,
    mode: ModeOption = None,
    fusion: FusionOption = None,
    rerank: Annotated[str | None, typer.Option(help="'qa': reorder the hits by how well they answer the query.")] = None,
    reader: ReaderOption = None,
    model: ModelOption = None,
    precision: PrecisionOption = "auto",
    server: ServerOption = None,
    as_json: JsonOption = False,
) -> None:
    """Search an index and print the best-matching chunks."""
    if use_server(index, server, model=model, reader=explicit_reader(reader)):
        from searchkit.client import Client

        with Client(server) as client:
            hits = client.search(
                query, k, where=where or None, mode=mode, fusion=fusion, rerank=rerank
            )
    else:
        with Index.open(index, model=model, precision=precision) as opened:
            if rerank:
                use_reader(opened, reader)
            hits = opened.search(query, k, where=where or None, mode=mode, fusion=fusion, rerank=rerank)
    if as_json:
        typer.echo(json.dumps([hit.to_dict() for hit in hits], indent=2, ensure_ascii=False))
    elif not hits:
        typer.echo("no hits")
    else:
        for hit in hits:
            print_hit(hit)


def use_server(index: Path | None, server: str | None, **local_only: object) -> bool:
    """Whether a command asks a server (``--server``) rather than an index here (``--index``); one is needed."""
    if (index is None) == (server is None):
        raise ConfigError("give --index DIR to search an index here, or --server URL to ask a running searchkit serve")
    given = [f"--{name}" for name, value in local_only.items() if value is not None]
    if server is not None and given:
        raise ConfigError(f"{', '.join(given)} cannot be used with --server: the server uses its own")
    return server is not None


def explicit_reader(reader: str | None) -> str | None:
    """``--reader`` when typed, None when it only comes from SEARCHKIT_READER (a server has its own reader)."""
    return None if reader == os.environ.get("SEARCHKIT_READER") else reader


def print_hit(hit: Hit, width: int = 300) -> None:
    heading = f"{hit.rank:>2}. {hit.score:.4f}  {printable(hit.doc_id)}"
    if hit.title:
        heading += f"  {printable(hit.title)}"
    typer.secho(heading, bold=True)
    snippet = " ".join(printable(hit.text).split())
    if len(snippet) > width:
        snippet = snippet[: width - 3].rsplit(" ", 1)[0] + "..."
    typer.echo(f"    {snippet}")
    details = [f"chars {hit.start}-{hit.end}"] + [f"{key}={value}" for key, value in hit.metadata.items()]
    typer.secho(f"    {printable('  '.join(details))}", dim=True)


def choose_reader(spec: str | None, embedder: Embedder) -> Reader:
    """The reader named by ``spec``, saying so in one line when it falls back to the default."""
    from searchkit.reader import load_reader

    reader, notice = load_reader(spec, embedder)
    if notice:
        typer.secho(f"notice: {printable(notice)}", err=True, fg=typer.colors.YELLOW)
    return reader


def use_reader(index: Index, spec: str | None) -> None:
    index.reader = choose_reader(spec, index.embedder)


@command("ask")
@user_errors
def ask_command(
    question: Annotated[str, typer.Argument(metavar="QUESTION", help="A question in plain words.", show_default=False)],
    index: SearchIndexOption = None,
    k: Annotated[int, typer.Option("-k", "--k", min=1, help="Number of answers.")] = 5,
    candidates: Annotated[int, typer.Option(min=1, help="Chunks retrieved and read.")] = 20,
    where: WhereOption = None,
    mode: ModeOption = None,
    reader: ReaderOption = None,
    model: ModelOption = None,
    precision: PrecisionOption = "auto",
    server: ServerOption = None,
    as_json: JsonOption = False,
) -> None:
    """Answer a question from the index: retrieve passages, read them, print the best answer spans."""
    if use_server(index, server, model=model, reader=explicit_reader(reader)):
        from searchkit.client import Client

        with Client(server) as client:
            answers = client.ask(question, k, where=where or None, mode=mode, candidates=candidates)
    else:
        with Index.open(index, model=model, precision=precision) as opened:
            use_reader(opened, reader)
            answers = opened.ask(question, k, where=where or None, mode=mode, candidates=candidates)
    if as_json:
        typer.echo(json.dumps([answer.to_dict() for answer in answers], indent=2, ensure_ascii=False))
    elif not answers:
        typer.echo("no answers")
    for rank, answer in enumerate([] if as_json else answers, start=1):
        heading = f"{rank:>2}. {answer.score:.3f}  {' '.join(printable(answer.answer).split())}"
        typer.secho(heading if len(heading) < 160 else heading[:157] + "...", bold=True)
        title = f"  {printable(answer.title)}" if answer.title else ""
        typer.echo(f"    {printable(answer.doc_id)}{title}  chars {answer.start}-{answer.end}")
        typer.secho(f"    {snippet_around(printable(answer.context))}", dim=True)


def snippet_around(context: str, width: int = 240) -> str:
    """The part of ``context`` around the marked answer, on one line."""
    text = " ".join(context.split())
    if len(text) <= width:
        return text
    from searchkit.reader import ANSWER_MARKERS

    middle = max(text.find(ANSWER_MARKERS[0]), 0)
    start = max(0, min(middle - width // 3, len(text) - width))
    return ("..." if start else "") + text[start:start + width] + ("..." if start + width < len(text) else "")


@command("train-reader")
@user_errors
def train_reader_command(
    squad_json: Annotated[
        Path, typer.Argument(metavar="SQUAD_JSON", help="Training data in SQuAD v1.1 JSON format.", show_default=False)
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", metavar="DIR", help="Folder to write the trained reader to.", show_default=False)
    ],
    base: Annotated[str, typer.Option(metavar="NAME", help="Encoder to start from: a model name or folder.")] = "all-MiniLM-L6-v2",
    articles: Annotated[
        str | None, typer.Option(metavar="RANGE", help="Articles to train on, 1-based, such as 1-28 [default: all].")
    ] = None,
    epochs: Annotated[int, typer.Option(min=1, help="Passes over the training data (the time limit may end it sooner).")] = 3,
    batch_size: Annotated[int, typer.Option(min=1, help="Windows per optimisation step.")] = 8,
    learning_rate: Annotated[float, typer.Option(help="Peak learning rate (linear warm-up and decay).")] = 2e-4,
    dropout: Annotated[float, typer.Option(help="Dropout while training; off by default, as short runs do not overfit.")] = 0.0,
    time_limit: Annotated[
        float,
        typer.Option(
            metavar="MINUTES", min=0,
            help="Train for at most this long; the schedule decays to zero by then. Scoring the held-out "
            "questions and fitting the rerank weight follow (2 to 3 minutes on 2 CPU cores). 0: no limit, all epochs.",
        ),
    ] = 17.0,
    max_examples: Annotated[int | None, typer.Option(min=1, help="Train on at most this many questions [default: all].")] = None,
    eval_fraction: Annotated[float, typer.Option(help="Share of the articles held out for evaluation; 0 holds out nothing.")] = 0.05,
    device: Annotated[str, typer.Option(metavar="auto|cpu|cuda", help="Where to train; auto: a GPU when torch sees one.")] = "auto",
    precision: Annotated[
        str, typer.Option(metavar="auto|fp32|bf16", help="Arithmetic; auto: bf16 autocast where the CPU or GPU runs it natively.")
    ] = "auto",
    threads: Annotated[
        int | None, typer.Option(min=1, help="CPU threads [default: 1 or all cores, whichever the first steps measure faster].")
    ] = None,
    restart: Annotated[bool, typer.Option("--restart", help="Ignore a checkpoint in --out and train from the start.")] = False,
    rerank_questions: Annotated[
        int, typer.Option(min=0, help="Held-out questions that fit the reader's QA rerank weight; 0: keep 0.5.")
    ] = 100,
    as_json: JsonOption = False,
) -> None:
    """Fine-tune an extractive QA reader on SQuAD-format data; an interrupted run resumes. `ask --reader OUT` uses it."""
    from searchkit.squad import load_squad
    from searchkit.training import train_reader

    data = load_squad(squad_json, parse_articles(articles))
    report_problems(data.problems, squad_json)
    report = train_reader(
        data, out, base=base, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, dropout=dropout,
        time_limit=time_limit * 60 or None, max_examples=max_examples, eval_fraction=eval_fraction, device=device,
        precision=precision, threads=threads, resume=not restart, progress=not as_json,
        rerank_questions=rerank_questions,
    )
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        return
    where = f"{report.threads} CPU thread{'s' if report.threads > 1 else ''}" if report.device == "cpu" else report.device
    summary = (f"trained {report.steps} steps on {report.train_examples} questions in {report.train_seconds:.0f} s"
               f" ({where})")
    if report.stopped_by == "time limit":
        summary += f" (the time limit ended it; all epochs are {report.planned_steps} steps)"
    if report.exact_match is None or report.f1 is None:
        summary += "; nothing held out, so no held-out scores"
    else:
        summary += (
            f"; held-out {report.eval_questions} questions: exact match {report.exact_match:.1f}, F1 {report.f1:.1f}"
            f" with answers of up to {report.max_answer_tokens} tokens (the limit fitted on them)"
        )
    typer.echo(summary)
    if report.rerank:
        typer.echo(f"QA rerank weight {report.rerank['weight']:g} (nDCG@10 {report.rerank['gain']:+.4f} over retrieval "
                   f"alone on {report.rerank['questions']} held-out questions)")
    typer.echo(f"saved to {out}; use it with: searchkit ask QUESTION --index DIR --reader {out}")


@command("eval-qa")
@user_errors
def eval_qa_command(
    squad_json: Annotated[
        Path, typer.Argument(metavar="SQUAD_JSON", help="Questions in SQuAD v1.1 JSON format.", show_default=False)
    ],
    reader: Annotated[
        list[str] | None,
        typer.Option(
            "--reader", metavar="NAME",
            help="QA reader: 'phrase' (default, offline), 'sentence' (whole sentences), a folder written by "
            "train-reader, or any transformers QA "
            "model. Repeat it to put readers side by side, each compared with the first.",
        ),
    ] = None,
    articles: Annotated[
        str | None, typer.Option(metavar="RANGE", help="Articles to evaluate, 1-based, such as 29-36 [default: all].")
    ] = None,
    index: Annotated[
        Path | None,
        typer.Option(
            "--index", "-i", metavar="DIR",
            help="Also answer open-domain from an index of all the file's paragraphs (built or completed first).",
        ),
    ] = None,
    k: Annotated[int, typer.Option("-k", "--k", min=1, help="Passages read per question in open-domain QA.")] = 5,
    mode: ModeOption = None,
    precision: PrecisionOption = "auto",
    as_json: JsonOption = False,
) -> None:
    """Exact match and F1 of readers: on each question's own paragraph, and open-domain through an index."""
    from searchkit.evaluation import evaluate_open_domain
    from searchkit.squad import compare_readings, load_squad, paragraph_documents, read_gold

    data = load_squad(squad_json, parse_articles(articles))
    report_problems(data.problems, squad_json)
    embedder = load_embedder(precision=precision)
    specs = reader or [os.environ.get("SEARCHKIT_READER") or None]
    results: dict[str, dict[str, Any]] = {}
    readings = []
    for spec in specs:
        chosen = choose_reader(spec, embedder)
        gold = read_gold(chosen, data, progress=not as_json)
        name = unique_name(chosen.name, results)
        results[name] = {**gold.metrics, "reader": chosen.name, "seconds": gold.seconds}
        if readings:
            results[name]["against_first"] = compare_readings(readings[0], gold, data)
        readings.append(gold)
        if index is not None:
            with Index.open_or_create(index, model=embedder) as opened:
                # Always add: unchanged paragraphs are skipped, and an interrupted build is completed.
                opened.add(paragraph_documents(load_squad(squad_json)), progress=not as_json)
                opened.reader = chosen
                results[name]["open_domain"] = evaluate_open_domain(
                    opened, data, k, mode=mode, progress=not as_json
                ).to_dict()
    if as_json:
        typer.echo(json.dumps(next(iter(results.values())) if len(results) == 1 else results, indent=2))
        return
    for name, result in results.items():
        typer.echo(f"reader {printable(name)}, {result['questions']} questions")
        typer.echo(f"  gold paragraph:  exact match {result['exact_match']:.2f}  F1 {result['f1']:.2f}")
        if "against_first" in result:
            versus = result["against_first"]
            typer.echo(
                f"  against {printable(next(iter(results)))}: exact match {versus['exact_match']:+.2f}  "
                f"F1 {versus['f1']:+.2f}  (F1 better on {versus['better']} questions, worse on {versus['worse']})"
            )
        if "open_domain" in result:
            od = result["open_domain"]
            typer.echo(
                f"  open-domain:     exact match {od['exact_match']:.2f}  F1 {od['f1']:.2f}  "
                f"(paragraph retrieved in the top {k}: {od[f'retrieval_recall@{k}']:.1f}%)"
            )


def unique_name(name: str, taken: dict[str, Any]) -> str:
    """``name``, or ``name #2``, ``#3``... when a reader of that name is already in ``taken``."""
    if name not in taken:
        return name
    return next(f"{name} #{n}" for n in range(2, len(taken) + 2) if f"{name} #{n}" not in taken)


def parse_articles(text: str | None) -> slice | None:
    """``"29-36"`` (1-based, inclusive) as a slice of the file's articles; ``"5"`` is one article."""
    if not text:
        return None
    first, _, last = text.partition("-")
    try:
        start, stop = int(first), int(last or first)
    except ValueError:
        raise ConfigError(f"--articles takes a range like 1-28, got {text!r}") from None
    if start < 1 or stop < start:
        raise ConfigError(f"--articles takes a range like 1-28 (1-based, first <= last), got {text!r}")
    return slice(start - 1, stop)


def report_problems(problems: list, source: Path, limit: int = 20) -> None:
    for problem in problems[:limit]:
        typer.secho(f"skipped {printable(problem)}", err=True, fg=typer.colors.YELLOW)
    if len(problems) > limit:
        typer.secho(f"... and {len(problems) - limit} more problems in {source}", err=True, fg=typer.colors.YELLOW)


@command("delete")
@user_errors
def delete_command(
    doc_ids: Annotated[list[str], typer.Argument(metavar="ID...", help="Ids of the documents to remove.", show_default=False)],
    index: IndexOption,
    wait: WaitOption = 0.0,
    as_json: JsonOption = False,
) -> None:
    """Remove documents from an index by id; ids not in the index are listed and exit with status 1."""
    with Index.open(index, lock_timeout=wait) as opened:
        report = opened.delete(doc_ids)
    if as_json:
        typer.echo(json.dumps(
            {"deleted": report.deleted, "not_found": report.not_found, "chunks_removed": report.chunks_removed},
            indent=2, ensure_ascii=False,
        ))
    else:
        typer.echo(f"deleted {len(report.deleted)} documents ({report.chunks_removed} chunks)")
        if report.not_found:
            missing = ", ".join(printable(doc_id) for doc_id in report.not_found)
            typer.secho(f"not in the index: {missing}", err=True, fg=typer.colors.YELLOW)
    if report.not_found:
        raise typer.Exit(EXIT_SKIPPED)


@command("info")
@user_errors
def info_command(index: IndexOption, as_json: JsonOption = False) -> None:
    """Show an index's configuration (model, chunking, vectors) and counts."""
    with Index.open(index) as opened:
        info = opened.info()
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    config = info["config"]
    model, chunking, counts = config["model"], config["chunking"], info["counts"]
    rows = [
        ("index", info["path"]),
        ("model", model["name"]),
        ("  weights sha256", model["weights_sha256"]),
        ("  dimension", model["dimension"]),
        ("  normalised", model["normalize"]),
        ("  max sequence", f"{model['max_seq_length']} word pieces"),
        ("  precision", f"{model['precision']} (passages)"),
        ("chunking", f"{chunking['max_tokens']} word pieces, {chunking['overlap_tokens']} overlap"),
        ("vectors", f"FAISS {info['vector_index']} ({config['vectors']['description']} requested), {config['vectors']['metric']}"),
        ("  search knobs", f"ef_search {config['vectors']['ef_search']}, nprobe {config['vectors']['nprobe']}"),
        ("search", "{mode}, {fusion} fusion (dense weight {hybrid_weight:g}, feedback {feedback:g}), BM25 k1 {k1:g}, b {b:g}"
         .format(**config["search"])),
        ("documents", f"{counts['documents']:,}"),
        ("chunks", f"{counts['chunks']:,}"),
        ("vectors held", f"{counts['vectors']:,}"),
        ("metadata fields", ", ".join(f"{name} ({', '.join(kinds)})" for name, kinds in info["metadata_fields"].items()) or "none"),
        ("schema version", config["schema_version"]),
        ("store generation", info["generation"]),
        ("size on disk", f"{sum(info['size_bytes'].values()) / 1e6:.1f} MB"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        typer.echo(f"{name:<{width}}  {printable(value)}")


@command("shard")
@user_errors
def shard_command(
    source: Annotated[Path, typer.Argument(metavar="DIR", help="The index to split (only read).", show_default=False)],
    shards: Annotated[int, typer.Option("--shards", "-n", min=1, help="How many shards.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", metavar="SHARDS", help="New or empty folder for the shards.", show_default=False)],
    as_json: JsonOption = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Split an index into N ordinary indexes by a hash of the document id, for `serve --shards`.

    Stored embeddings are copied, nothing is re-embedded; each shard keeps the index's
    model, chunking, vector index type and search settings.
    """
    from searchkit.distributed.sharding import shard_index

    report = shard_index(source, shards, out, progress=not quiet and not as_json)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        return
    for number, (documents, chunks) in enumerate(zip(report.documents, report.chunks)):
        typer.echo(f"shard {number}: {documents:,} documents, {chunks:,} chunks")
    typer.echo(f"{printable(out)}: {shards} shards in {report.seconds:.1f} s")


@command("reindex")
@user_errors
def reindex_command(
    index: IndexOption,
    index_type: Annotated[
        str | None,
        typer.Option(
            metavar="TYPE",
            help="Switch the kind of vector index: Flat (exact), HNSW32, IVF,Flat, IVF,SQ8, IVF,PQ48, or auto "
            "(exact up to 300,000 chunks, HNSW32 above) [default: keep the current kind].",
        ),
    ] = None,
    ef_search: Annotated[int | None, typer.Option(min=1, help="HNSW search breadth (more: slower, better recall).")] = None,
    nprobe: Annotated[int | None, typer.Option(min=1, help="IVF lists probed per query (more: slower, better recall).")] = None,
    wait: WaitOption = 0.0,
    as_json: JsonOption = False,
) -> None:
    """Rebuild the vector index from the stored embeddings, without re-embedding; optionally switch its kind."""
    with Index.open(index, lock_timeout=wait) as opened:
        count = opened.reindex(index_type, ef_search=ef_search, nprobe=nprobe)
        kind = opened.vectors.description
    if as_json:
        typer.echo(json.dumps({"index": str(index), "vector_index": kind, "vectors": count}, indent=2))
    else:
        typer.echo(f"rebuilt the vector index at {printable(index)}: {kind}, {count:,} vectors")


DatasetArgument = Annotated[
    Path,
    typer.Argument(
        metavar="DATASET", help="Folder in BEIR layout: corpus.jsonl, queries.jsonl, qrels/<split>.tsv.", show_default=False
    ),
]


@command("eval")
@user_errors
def eval_command(
    dataset: DatasetArgument,
    index: Annotated[
        Path,
        typer.Option(
            "--index", "-i", metavar="DIR", show_default=False,
            help="Index to evaluate; built from the dataset's corpus if it does not exist.",
        ),
    ],
    k: Annotated[str, typer.Option("--k", metavar="K,...", help="Comma-separated cut-offs.")] = "1,3,10,100",
    compare: Annotated[
        list[str] | None,
        typer.Option(
            metavar="KEY=VALUE,...",
            help="Another setting to evaluate side by side, as KEY=VALUE[,KEY=VALUE] with keys "
            "mode, fusion, model, precision, chunk_tokens, overlap, max_chunks, index (repeatable), e.g. 'mode=hybrid'."
        ),
    ] = None,
    mode: ModeOption = None,
    fusion: FusionOption = None,
    model: ModelOption = None,
    chunk_tokens: Annotated[int | None, typer.Option(help="Chunk size when the index is built [default: 254].")] = None,
    overlap: Annotated[int | None, typer.Option(help="Chunk overlap when the index is built [default: 32].")] = None,
    max_chunks: Annotated[
        int | None, typer.Option(help="Chunks kept per document when the index is built; 1 truncates like MTEB [default: 0, all].")
    ] = None,
    split: Annotated[str, typer.Option(help="Qrels split: qrels/<split>.tsv.")] = "test",
    report: Annotated[Path | None, typer.Option(metavar="DIR", help="Also write per-query scores, TREC runs and plots to this folder.")] = None,
    cache: Annotated[bool, typer.Option(help="Reuse embeddings of texts embedded before by the same model.")] = True,
    precision: PrecisionOption = "auto",
    as_json: JsonOption = False,
) -> None:
    """Measure retrieval quality (nDCG, recall, MRR, MAP, precision) against labeled queries."""
    cutoffs = parse_cutoffs(k)
    from searchkit.datasets import load_beir
    from searchkit.evaluation import EvalSetting, evaluate_settings, format_table, parse_variant, write_report

    data = load_beir(dataset, split)
    report_problems(data.problems, dataset)
    chunking = None
    if chunk_tokens is not None or overlap is not None or max_chunks is not None:
        defaults = ChunkingConfig()
        chunking = ChunkingConfig(
            chunk_tokens or defaults.max_tokens,
            overlap if overlap is not None else defaults.overlap_tokens,
            max_chunks or defaults.max_chunks,
        )
    base = EvalSetting(
        index.name if mode is None else f"{index.name} {mode.value}", index, model, chunking, mode, fusion, precision
    )
    settings = [base] + [base.with_changes(parse_variant(text)) for text in compare or []]
    results = evaluate_settings(data, settings, cutoffs, cache=cache, progress=not as_json)
    if report is not None:
        written = write_report(report, results, data.qrels)
        typer.secho(f"wrote {len(written)} files to {report}", err=True)
    if as_json:
        summaries = {r.name: r.summary() for r in results}
        typer.echo(json.dumps(summaries[base.name] if len(results) == 1 else summaries, indent=2))
        return
    typer.echo(format_table(results, cutoffs))
    skipped = results[0].evaluation.skipped
    if skipped:
        typer.echo(f"{len(skipped)} queries without relevant judgements were left out: {', '.join(skipped[:10])}")


@command("tune")
@user_errors
def tune_command(
    dataset: DatasetArgument,
    index: Annotated[
        Path,
        typer.Option(
            "--index", "-i", metavar="DIR", show_default=False,
            help="Index to tune; built from the dataset's corpus if it does not exist.",
        ),
    ],
    split: Annotated[str, typer.Option(help="Qrels split: qrels/<split>.tsv.")] = "test",
    seed: Annotated[int, typer.Option(help="Seed of the split into tuning and held-out halves.")] = 0,
    alpha: Annotated[float, typer.Option(min=0.0, max=1.0, help="Significance the held-out gain needs to be applied.")] = 0.05,
    apply: Annotated[
        bool, typer.Option("--apply/--dry-run", help="Write a winner that beats the current settings into the manifest.")
    ] = True,
    top: Annotated[int, typer.Option(min=1, help="Rows of the table (best on the tuning half first).")] = 12,
    cache: Annotated[bool, typer.Option(help="Reuse embeddings of texts embedded before by the same model.")] = True,
    as_json: JsonOption = False,
) -> None:
    """Choose the index's search settings (mode, fusion, hybrid weight, BM25 k1 and b) from labeled queries.

    Every setting of a grid is scored on half of the queries; the best is compared with the
    index's current settings on the other half, with a paired randomization test, and written
    into the manifest (later searches use it) only when it wins there significantly.
    """
    from searchkit.cache import CachedEmbedder
    from searchkit.datasets import load_beir
    from searchkit.sources import read_sources
    from searchkit.state import MANIFEST_FILE, read_manifest
    from searchkit.tuning import tune

    data = load_beir(dataset, split)
    report_problems(data.problems, dataset)
    model = read_manifest(index).model.name if (index / MANIFEST_FILE).exists() else None
    embedder = load_embedder(model) if model else load_embedder()
    with Index.open_or_create(index, model=CachedEmbedder(embedder) if cache else embedder) as opened:
        opened.add(read_sources([data.corpus_path]), progress=not as_json)  # an interrupted build is completed first
        result = tune(opened, data, seed=seed, alpha=alpha, apply=apply, progress=not as_json)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    rows = [("setting", "tune", "held-out")] + [
        (trial.label(), f"{trial.tune:.4f}", f"{trial.held_out:.4f}") for trial in result.trials[:top]
    ] + [(f"current: {result.current.label()}", f"{result.current.tune:.4f}", f"{result.current.held_out:.4f}")]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    typer.echo(f"nDCG@10 on {result.tune_queries} tuning and {result.held_out_queries} held-out queries "
               f"({len(result.trials)} settings)")
    for row in rows:
        typer.echo("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))))
    verdict = (
        f"winner {result.winner.label()}: held-out nDCG@10 {result.current.held_out:.4f} -> {result.winner.held_out:.4f} "
        f"({result.gain:+.4f}, paired randomization test p = {result.p_value:.4f})"
    )
    typer.echo(verdict)
    if result.applied:
        typer.echo(f"written to {index / MANIFEST_FILE}: later searches use it unless they say otherwise")
    elif result.better:
        typer.echo("not written (--dry-run)")
    else:
        typer.echo(f"the current settings stay: the winner does not beat them on the held-out half at p < {alpha}")
    for note in result.notes:
        typer.echo(f"note: {note}")


def parse_cutoffs(text: str) -> list[int]:
    try:
        cutoffs = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise ConfigError(f"--k takes comma-separated positive integers like 1,3,10,100, got {text!r}") from None
    if not cutoffs or cutoffs[0] < 1:
        raise ConfigError(f"--k takes comma-separated positive integers like 1,3,10,100, got {text!r}")
    return cutoffs


@command("serve")
@user_errors
def serve_command(
    index: Annotated[
        Path | None, typer.Option("--index", "-i", metavar="DIR", help="Index directory (or --shards).", show_default=False)
    ] = None,
    host: Annotated[str, typer.Option(metavar="HOST", help="Address to listen on; 0.0.0.0 opens it to the network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8000,
    allow_writes: Annotated[
        bool, typer.Option("--allow-writes", help="Allow adding and deleting documents through the API.")
    ] = False,
    api_key: Annotated[
        str | None,
        typer.Option(envvar="SEARCHKIT_API_KEY", metavar="KEY", help="Key that writes must send (Authorization: Bearer KEY)."),
    ] = None,
    cors: Annotated[
        list[str] | None,
        typer.Option(metavar="ORIGIN", help="Origin allowed to call the API from a browser, such as https://intranet.example (repeatable) [default: none]."),
    ] = None,
    max_k: Annotated[int, typer.Option(min=1, help="Largest k a request may ask for.")] = 100,
    max_body_mb: Annotated[float, typer.Option(min=0.001, help="Largest request body, in MiB.")] = 10.0,
    wait: Annotated[
        float,
        typer.Option("--wait", metavar="SECONDS", min=0, help="How long a write waits for another writer before it is refused (423)."),
    ] = 10.0,
    reader: ReaderOption = None,
    model: ModelOption = None,
    model_threads: Annotated[
        int, typer.Option(min=0, help="Threads one query's encode uses; requests run side by side anyway; 0: one per core.")
    ] = 1,
    access_log: Annotated[bool, typer.Option(help="Log every request.")] = True,
    shards: Annotated[
        Path | None,
        typer.Option(metavar="SHARDS", help="Serve the shards `searchkit shard` wrote here, as one index, instead of --index."),
    ] = None,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray", metavar="auto|ADDRESS",
            help="With --shards: serve each shard on Ray Serve (an address joins a cluster; 'auto' as for index --ray) "
            "[default: every shard in this process].",
        ),
    ] = None,
    replicas: Annotated[int, typer.Option(min=1, help="Ray Serve replicas of each shard, with --ray.")] = 1,
    replica_cpus: Annotated[float, typer.Option(min=0, help="CPUs Ray reserves for each shard replica, with --ray.")] = 1.0,
    shard_timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds a shard has to answer before a search fails naming it, with --ray.")
    ] = 30.0,
) -> None:
    """Serve an index over HTTP: a REST API (docs at /docs), a search page at /, for `--server` and searchkit.Client.

    The model is loaded once; searches run concurrently, and documents added by another
    process (`searchkit index`) are searched at once, without a restart. With --shards,
    a query goes to every shard and the results are merged: the same API, page and
    results as the unsharded index (read-only: write the source index and shard it again).
    """
    from searchkit.server import ServerSettings, bind_is_local, serve

    if (index is None) == (shards is None):
        raise ConfigError("give --index DIR, or --shards SHARDS for a sharded collection (one of the two)")
    if shards is not None and allow_writes:
        raise ConfigError("a sharded collection is served read-only: leave out --allow-writes (write the source index, then shard it again)")
    if ray is not None and shards is None:
        raise ConfigError("--ray serves shards: give --shards SHARDS (made by searchkit shard)")

    if allow_writes and not api_key and not bind_is_local(host):
        typer.secho(
            f"warning: anyone who can reach {printable(host)}:{port} can change this index; set --api-key",
            err=True, fg=typer.colors.YELLOW,
        )
    settings = ServerSettings(
        allow_writes=allow_writes, api_key=api_key or None, cors_origins=tuple(cors or ()), max_k=max_k,
        max_body_bytes=int(max_body_mb * 2**20),
    )
    with open_served(index, shards, model, wait, ray, replicas, replica_cpus, shard_timeout) as opened:
        use_reader(opened, reader)  # type: ignore[arg-type]
        typer.echo(
            f"serving {printable(index or shards)} ({len(opened):,} documents) on http://{printable(host)}:{port}"
            f" (writes {'on' if allow_writes else 'off'})", err=True,
        )
        serve(opened, host, port, settings, model_threads=model_threads or None, access_log=access_log)  # type: ignore[arg-type]


def open_served(
    index: Path | None, shards: Path | None, model: str | None, wait: float, ray: str | None, replicas: int,
    replica_cpus: float, shard_timeout: float,
) -> Any:
    """What `serve` serves: an index, or a sharded collection (shards in this process, or on Ray Serve)."""
    if shards is None:
        return Index.open(index, model=model, lock_timeout=wait)
    if ray is None:
        from searchkit.distributed.router import ShardedIndex

        return ShardedIndex.open_local(shards, model=model)
    from searchkit.distributed.serving import open_on_ray

    return open_on_ray(shards, replicas=replicas, address=ray, model=model, replica_cpus=replica_cpus, timeout=shard_timeout)


class _NoticeHandler(logging.Handler):
    """Prints what the library logs as worth a user's attention (a repaired vector file, say) as one line."""

    def emit(self, record: logging.LogRecord) -> None:
        typer.secho(f"notice: {printable(record.getMessage())}", err=True, fg=typer.colors.YELLOW)


def main() -> None:
    library_log = logging.getLogger("searchkit")
    library_log.addHandler(_NoticeHandler(logging.WARNING))
    library_log.propagate = False
    app(prog_name="searchkit")


if __name__ == "__main__":
    sys.exit(main())
