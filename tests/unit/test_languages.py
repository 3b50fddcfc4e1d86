"""Prompt languages: BCP 47 tags as the catalog spells them (the language, and the region
only where the prompts differ by region); other spellings of one language are accepted as
that language, a language whose prompts differ by region must name one."""

from __future__ import annotations

import pytest

from zpctl.model import catalog
from zpctl.model.types import _language, canonical_language


@pytest.mark.parametrize(("written", "code"), [
    ("de", "de"), ("de-DE", "de"), ("de-AT", "de"), ("DE", "de"), ("en_us", "en-US"),
    ("EN-gb", "en-GB"), ("fr-FR", "fr-FR"), ("fr_ca", "fr-CA"), ("zh-hk", "zh-HK"),
])
def test_other_spellings_are_the_catalogs_code(written: str, code: str) -> None:
    assert canonical_language(written) == code
    assert _language(written) == code


@pytest.mark.parametrize(("written", "says"), [
    ("fr", "use fr-CA or fr-FR"), ("pt", "use pt-BR or pt-PT"), ("xx", "unknown prompt language"),
    ("en-US-x", "use en-US or en-GB"), ("", "unknown prompt language"),
])
def test_unknown_or_ambiguous_is_refused_with_the_choices(written: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        _language(written)


def test_every_catalog_code_is_its_own_canonical_form() -> None:
    assert all(canonical_language(code) == code for code in catalog.LANGUAGES)
