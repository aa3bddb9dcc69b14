"""A bibliography whose labels match the book's author-year citations.

``bibtex_reference_style: author_year`` makes citations read "Nguyen et al. (2026)"; this
style gives the list the same labels, "[Nguyen et al., 2026]", instead of numbers, sorted by
author, year and title. Loaded by ``_config.yml`` (``sphinx.local_extensions``).
"""

from pybtex.plugin import register_plugin
from pybtex.style.formatting.unsrt import Style
from pybtex.style.labels import BaseLabelStyle


class AuthorYearLabels(BaseLabelStyle):
    """ "Last", "Last and Last" or "Last et al.", then the year."""

    def format_labels(self, sorted_entries):
        for entry in sorted_entries:
            people = entry.persons.get("author") or entry.persons.get("editor") or []
            names = [" ".join(person.last_names) for person in people]
            if len(names) > 2:
                who = f"{names[0]} et al."
            elif names:
                who = " and ".join(names)
            else:
                who = entry.key
            yield f"{who}, {entry.fields.get('year', 'n.d.')}"


class AuthorYearStyle(Style):
    default_label_style = AuthorYearLabels
    default_sorting_style = "author_year_title"


def setup(app):
    register_plugin("pybtex.style.formatting", "author_year", AuthorYearStyle)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
