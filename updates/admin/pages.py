"""The frame of the admin's own pages (dashboard, queue, batch): the admin's context and title,
and the 403 page that says which permission is missing."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from django.template.response import TemplateResponse


def page(request: HttpRequest, title: str, template: str, context: dict,
         status: int = 200) -> TemplateResponse:
    return TemplateResponse(
        request, template, {**admin.site.each_context(request), "title": title, **context},
        status=status)


def forbidden(request: HttpRequest, title: str, why: str) -> TemplateResponse:
    return page(request, title, "admin/updates/forbidden.html", {"why": why}, status=403)
