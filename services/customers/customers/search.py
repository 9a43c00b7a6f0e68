"""How customer text is folded for matching: keyword search and duplicate detection.

Search must find "Müller" when typed "muller", "ACME" when typed "acme",
and Chinese text as typed. Folding (case-fold, then strip accents after
NFKD decomposition) is applied once when a customer is written, into
``search_text`` and ``dedupe_key``, and to the query when searching: the
database then compares plain lower-case text, and a trigram index on
PostgreSQL makes substring search fast.
"""
import unicodedata

# Company-form words that do not make two names different.
COMPANY_SUFFIXES = (
    "co", "company", "corp", "corporation", "inc", "incorporated", "llc", "ltd", "limited", "gmbh", "plc",
    "有限公司", "有限责任公司", "股份有限公司", "公司", "集团",
)


def fold(text):
    """Lower-case, accent-free, single-spaced text (Chinese characters unchanged)."""
    if not text:
        return ""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return " ".join("".join(c for c in decomposed if not unicodedata.combining(c)).split())


def search_text(name, company_name=None, contact_names=()):
    """What keyword search scans: the customer's name, company and contact names."""
    parts = [fold(name), fold(company_name), *(fold(contact) for contact in contact_names)]
    return " | ".join(part for part in parts if part)


def name_key(text):
    """A name reduced to what identifies it: folded, punctuation and company forms dropped."""
    words = "".join(c if c.isalnum() else " " for c in fold(text)).split()
    words = [word for word in words if word not in COMPANY_SUFFIXES]
    key = "".join(words)
    for suffix in COMPANY_SUFFIXES:
        if key.endswith(suffix) and len(key) > len(suffix):
            key = key[: -len(suffix)]
            break
    return key


def dedupe_key(name, company_name=None):
    """Two customers with the same key are likely the same: normalised name + company."""
    return f"{name_key(name)}|{name_key(company_name)}"


def like_pattern(term):
    """A LIKE pattern matching ``term`` anywhere, with LIKE's wildcards escaped."""
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"
