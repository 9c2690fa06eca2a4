"""Searching the admin by phone number, however the operator writes it."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import HttpRequest

from ..services.composing import as_recipient


class RecipientSearch:
    """A search for a whole phone number finds its messages however it is written.

    Recipients are stored as E.164 digits (``27831234567``); an operator pastes
    ``+27 83 123 4567`` or ``083 123 4567`` (with ``DEFAULT_REGION``), which the
    admin's word-by-word search would never match.  A term that is a phone
    number by the one MSISDN rule also finds that number exactly; every other
    search (a part of a number, an id) works as before.  ``tag:NAME`` finds the
    messages sent with that tag (through its index, like the tag filter).
    """

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        if search_term.startswith("tag:") and search_term[4:].strip():
            return queryset.filter(tags__tag=search_term[4:].strip()), False
        results, may_have_duplicates = super().get_search_results(  # type: ignore[misc]
            request, queryset, search_term
        )
        number = as_recipient(search_term)
        if number is not None:
            results = results | queryset.filter(recipient=number)
        return results, may_have_duplicates
