"""Why a listing cannot be published. ``reason`` is the label of
``huaweicloud_vod_scrape_errors_total``; each class names its own, in one place.

The API's failures (``cloud.errors``) derive from ``ListingFailed``; the pages' failure to add up
(``InconsistentListing``) is decided by the store, which sees every page, and lives here so that
the pure core needs nothing from the cloud layer.
"""

from __future__ import annotations


class ListingFailed(Exception):
    """A listing that cannot be published. ``reason`` is the label value."""

    reason = "bad_response"


class InconsistentListing(ListingFailed):
    """The pages cannot be exact: tasks were removed while paging, one was listed twice, an API in
    no order gained tasks while listed, or the API repeats or omits pages."""

    reason = "inconsistent"
