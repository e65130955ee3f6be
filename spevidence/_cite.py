"""How to cite spevidence, read from the ``CITATION.cff`` shipped inside the package.

The repository's root ``CITATION.cff`` is the source; ``spevidence/CITATION.cff`` is a
verbatim copy (a test checks they are identical) so that :func:`cite` also works from an
installed wheel, where the repository root does not exist.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any, Literal

import yaml

from spevidence.errors import SpevidenceError

__all__ = ["cite"]


def _load() -> dict[str, Any]:
    text = files("spevidence").joinpath("CITATION.cff").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    if not isinstance(data, dict) or "title" not in data:
        raise SpevidenceError(
            "The packaged CITATION.cff has no 'title'; reinstall spevidence or restore "
            "spevidence/CITATION.cff from the repository's CITATION.cff."
        )
    return data


def _author_names(data: dict[str, Any]) -> list[str]:
    names: list[str] = []
    for author in data.get("authors") or []:
        if not isinstance(author, dict):
            continue
        if author.get("name"):
            names.append(str(author["name"]))
        else:
            given = str(author.get("given-names", "")).strip()
            family = str(author.get("family-names", "")).strip()
            names.append(f"{family}, {given}".strip(", ") if family else given)
    return names


def _year(data: dict[str, Any]) -> str:
    released = data.get("date-released")
    return str(released)[:4] if released else "n.d."


def _text(data: dict[str, Any]) -> str:
    authors = "; ".join(_author_names(data)) or "Anonymous"
    parts = [f"{authors} ({_year(data)}). {str(data['title']).strip()}"]
    if data.get("version"):
        parts[0] += f" (version {data['version']})"
    parts[0] += " [Computer software]."
    for key in ("doi", "url", "repository-code"):
        if data.get(key):
            value = str(data[key])
            parts.append(f"https://doi.org/{value}" if key == "doi" else value)
            break
    if data.get("license"):
        parts.append(f"Licence: {data['license']}.")
    return " ".join(parts)


def _bibtex_escape(value: str) -> str:
    return value.replace("&", r"\&").replace("%", r"\%").replace("_", r"\_")


def _bibtex(data: dict[str, Any]) -> str:
    # corporate authors are wrapped in braces so BibTeX does not split them into names
    authors = (
        " and ".join(n if "," in n else "{" + n + "}" for n in _author_names(data)) or "{Anonymous}"
    )
    fields: list[tuple[str, str]] = [
        ("author", "{" + _bibtex_escape(authors) + "}"),
        ("title", "{{" + _bibtex_escape(str(data["title"]).strip()) + "}}"),
        ("year", "{" + _year(data) + "}"),
    ]
    if data.get("version"):
        fields.append(("version", "{" + str(data["version"]) + "}"))
    if data.get("date-released"):
        fields.append(("date", "{" + str(data["date-released"]) + "}"))
    if data.get("doi"):
        fields.append(("doi", "{" + str(data["doi"]) + "}"))
    url = data.get("url") or data.get("repository-code")
    if url:
        fields.append(("url", "{" + str(url) + "}"))
    if data.get("license"):
        fields.append(("license", "{" + str(data["license"]) + "}"))
    body = ",\n".join(f"  {key} = {value}" for key, value in fields)
    return "@software{spevidence,\n" + body + "\n}"


def cite(*, format: Literal["text", "bibtex"] = "text") -> str:
    """Return the citation for spevidence, from the packaged ``CITATION.cff``.

    Parameters
    ----------
    format : {"text", "bibtex"}, keyword-only
        ``"text"`` gives one reference line (authors, year, title, version);
        ``"bibtex"`` gives a ``@software`` entry for LaTeX users.

    Returns
    -------
    str
        The citation, without a trailing newline.

    Raises
    ------
    SpevidenceError
        If ``format`` is not ``"text"`` or ``"bibtex"``.

    References
    ----------
    Druskat S, Spaaks JH, Chue Hong N, et al. Citation File Format (CFF), version 1.2.0.
    Zenodo; 2021. https://doi.org/10.5281/zenodo.5171937

    Examples
    --------
    >>> from spevidence._cite import cite
    >>> print(cite(format="bibtex").splitlines()[0])
    @software{spevidence,
    """
    if format not in ("text", "bibtex"):
        raise SpevidenceError(f"cite(format=...) must be 'text' or 'bibtex', not {format!r}.")
    data = _load()
    return _text(data) if format == "text" else _bibtex(data)
