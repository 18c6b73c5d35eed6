"""The report as a static site (`protoscope report`): see build.py for its layout."""

from .build import SiteResult, write_site

__all__ = ["SiteResult", "write_site"]
