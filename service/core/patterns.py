"""Regular expressions that mean the same in the OpenAPI document as on the server.

`\\s` does not: ECMA-262 (what the document's readers use) counts U+FEFF and not U+0085 as
whitespace, pydantic's Rust engine the other way round, and Python's str.strip() also strips
U+001C–U+001F. So whitespace is spelled out, as the union of all three, in escapes every dialect
reads alike.
"""

WHITESPACE = r"\t\n\v\f\r \x1c-\x1f\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
