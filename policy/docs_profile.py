"""The jurisdiction-profile part of the generated documentation.

Renders the active profile's data (what the legal team reviews for *its* deployment):
the legal-basis catalogue with what counsel must still confirm, the bases each policy
cites, the face-recognition rules, the checkpoints, the obligations and the profile's
own test cases. Everything comes from ``profiles/<id>/data.json`` and the profile's
test module, as the engines load them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from policy._doctables import table, test_section
from policy.bundles import PolicyBundle, package_of
from policy.metadata import Annotation
from policy.rego_tests import test_profile

__all__ = ["TO_CONFIRM", "legal_basis", "profile_data", "profile_section"]

#: Appended to a citation that counsel must still confirm.
TO_CONFIRM = " [to confirm]"


def profile_data(bundle: PolicyBundle) -> Mapping[str, Any]:
    """The active profile's data (empty for a bundle without profiles)."""
    if bundle.profile is None:
        return {}
    return bundle.data.get(f"profiles.{bundle.profile}", {})


def _cite(catalogue: Mapping[str, Any], ids: Any) -> str:
    if not isinstance(ids, list):
        return ""
    cites = []
    for basis_id in ids:
        basis = catalogue.get(basis_id, {})
        mark = TO_CONFIRM if basis.get("status") != "checked" else ""
        cites.append(f"{basis.get('cite', basis_id)}{mark}")
    return "; ".join(cites)


def legal_basis(bundle: PolicyBundle, key: str) -> str:
    """The citations the active profile gives for ``key`` (a package name), or ""."""
    data = profile_data(bundle)
    return _cite(data.get("legal_bases", {}), data.get("rule_bases", {}).get(key))


def profile_section(bundle: PolicyBundle, engine: Any, test_notes: list[Annotation]) -> list[str]:
    """``## Jurisdiction profile`` with its tables and test cases."""
    data = profile_data(bundle)
    if not data:
        return []
    catalogue = data.get("legal_bases", {})
    out = [f"## Jurisdiction profile: {data.get('title', bundle.profile)}", ""]
    out += [f"Profile `{bundle.profile}`, from `profiles/{bundle.profile}/data.json`.", ""]
    out += [str(data.get("summary", "")), ""]
    if data.get("authority"):
        out += [f"**Supervisory authority:** {data['authority']}", ""]
    out += _catalogue(catalogue)
    out += ["### Legal bases each policy cites", ""]
    out += table(
        ["policy", "legal basis"],
        ((f"`{k}`", _cite(catalogue, v)) for k, v in sorted(data.get("rule_bases", {}).items())),
    )
    out += [
        "**Legal bases a watchlist entry may name** (the alert policy ignores an entry naming",
        'any other: "entry has no recognised legal basis"):',
        "",
    ]
    out += [f"- `{b}`: {_cite(catalogue, [b])}" for b in data.get("entry_bases", [])] + [""]
    out += _face_and_sites(data)
    out += _obligations(data, catalogue)
    out += _profile_tests(bundle, engine, test_notes)
    return out


def _catalogue(catalogue: Mapping[str, Any]) -> list[str]:
    out = ["### Legal-basis catalogue", ""]
    out += [
        '"Checked" means engineering compared the wording with a published text of the',
        "provision (the source given); it is not legal advice. Counsel confirms every",
        'application, and first the entries marked "to confirm" (wording or article number',
        "not found in an official text, or the application is an open question).",
        "",
    ]
    rows = (
        (
            f"`{basis_id}`",
            basis.get("cite"),
            basis.get("text"),
            "checked" if basis.get("status") == "checked" else "**to confirm**",
            " ".join(filter(None, [basis.get("note"), basis.get("source")])) or None,
        )
        for basis_id, basis in sorted(catalogue.items())
    )
    return out + table(["id", "citation", "what it says", "status", "notes and source"], rows)


def _face_and_sites(data: Mapping[str, Any]) -> list[str]:
    face = data.get("face_recognition", {})
    out = ["### Face recognition rules and checkpoints", ""]
    out += table(
        ["rule", "in force"],
        [
            (
                "a checkpoint must offer a way through that is not face recognition",
                face.get("alternative_required"),
            ),
            (
                "face data may not reach the service over the internet",
                face.get("no_internet_transfer"),
            ),
        ],
    )
    out += ["The match policy refuses a search at a checkpoint that breaks a rule in force.", ""]
    columns = ["name", "utc_offset_minutes", "open", "close", "alternative_verification", "link"]
    out += table(
        ["checkpoint", *columns],
        (
            (f"`{site}`", *(params.get(c) for c in columns))
            for site, params in sorted(data.get("sites", {}).items())
        ),
    )
    return out


def _obligations(data: Mapping[str, Any], catalogue: Mapping[str, Any]) -> list[str]:
    out = ["### Obligations", ""]
    out += [
        "Computed by `veilmatch.legal.obligations` from the number of people whose face",
        "information the service stores; the console shows the result to the legal team",
        "and supervisors.",
        "",
    ]
    rows = (
        (
            f"`{oid}`",
            o.get("title"),
            o.get("kind"),
            "always"
            if o.get("trigger") == "always"
            else f"from {o.get('threshold'):,} people"
            if o.get("threshold")
            else o.get("trigger"),
            o.get("deadline"),
            _cite(catalogue, o.get("bases"))
            + (TO_CONFIRM if o.get("status") == "to-confirm" else ""),
        )
        for oid, o in sorted(data.get("obligations", {}).items())
    )
    return out + table(["id", "obligation", "kind", "applies", "deadline", "legal basis"], rows)


def _profile_tests(bundle: PolicyBundle, engine: Any, test_notes: list[Annotation]) -> list[str]:
    packages = sorted(
        {
            package_of(text, path)
            for path, text in bundle.tests.items()
            if test_profile(path, text) == bundle.profile
        }
    )
    out: list[str] = []
    for package in packages:
        out += test_section(bundle, package, test_notes, engine, "### Profile test cases")
    return out
