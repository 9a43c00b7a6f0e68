"""How customer text is folded for matching: keyword search and duplicate detection.

Search must find "Müller" when typed "muller", "ACME" when typed "acme",
and Chinese text as typed. Folding (case-fold, then strip accents after
NFKD decomposition) is applied once when a customer is written, into
``search_text`` and ``dedupe_key``, and to the query when searching: the
database then compares plain lower-case text.

Every word of a query must appear in search_text, as LIKE '%word%' says on
every database. With 100,000+ customers LIKE alone scans them all, so each
database also gets a condition its index can answer (``matching``):

- PostgreSQL: a word with 3+ letters or digits in a row is found by the
  pg_trgm GIN index on search_text through the LIKE itself. Shorter words
  (Chinese names and words are often 1-2 characters) have no trigram, so they
  also ask the GIN index of each customer's characters and character pairs
  (customer_search_grams, migration 0007) for every pair of the word.
- SQLite: words of 3+ characters are looked up in the FTS5 trigram index
  customer_search (models.SQLITE_SEARCH_DDL); shorter ones are scanned by LIKE.

The extra conditions only narrow the rows LIKE then checks: they never
change which customers match.
"""
import unicodedata

from sqlalchemy import Text, column, func, select, table
from sqlalchemy.dialects.postgresql import ARRAY

from customers.models import Customer

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


def matching(statement, q, dialect):
    """``statement`` (a select of customers) narrowed to those containing every word of ``q``
    (see the module docstring)."""
    terms = fold(q).split()
    statement = statement.where(*(Customer.search_text.like(like_pattern(term), escape="\\") for term in terms))
    if dialect == "postgresql":
        statement = statement.where(*(_has_grams(term) for term in terms if not _has_trigram(term)))
    elif dialect == "sqlite":
        long_terms = [term for term in terms if len(term) >= FTS_MIN_LENGTH]
        if long_terms:
            statement = _fts_matches(statement, long_terms)
    return statement


# A trigram tokenizer finds nothing shorter than one trigram.
FTS_MIN_LENGTH = 3

_search_rows = table("customer_search_rows", column("id"), column("customer_id"))
_search = table("customer_search", column("rowid"), column("search_text"))


def _fts_matches(statement, terms):
    """Join the FTS5 matches of every term (FTS5 strings: implicit AND). A join rather than
    ``id IN (...)``: SQLite then reads the matches first and looks their customers up, instead of
    reading every customer a sales rep or team may see and checking each against the matches."""
    query = " ".join('"' + term.replace('"', '""') + '"' for term in terms)
    return (statement
            .join(_search_rows, _search_rows.c.customer_id == Customer.id)
            .join(_search, _search.c.rowid == _search_rows.c.id)
            .where(_search.c.search_text.match(query)))


def _has_trigram(term):
    """Whether pg_trgm can take a trigram from ``term`` for LIKE: it needs 3 word characters in a
    row (punctuation separates words for it)."""
    run = 0
    for character in term:
        run = run + 1 if character.isalnum() else 0
        if run >= 3:
            return True
    return False


def _has_grams(term):
    """customer_search_grams(search_text) holds every character and pair of adjacent characters
    (none with a space): a customer containing ``term`` holds all of the term's pairs, or the
    term itself when it is one character."""
    grams = sorted({term[i:i + 2] for i in range(len(term) - 1)}) or [term]
    return func.customer_search_grams(Customer.search_text, type_=ARRAY(Text)).contains(grams)
