"""The staging form: one field per active mapping of a connection, checked and normalised.

    FormClass = staging_form_class(connection)       # or (connection, base=a StagingForm subclass)
    form = FormClass(data=request.POST, initial=FormClass.initial_for(update))
    if form.is_valid():
        workflow.update_stage(connection=connection, by=request.user, **form.service_kwargs())
        # editing: workflow.update_edit(update=update, by=request.user, **form.service_kwargs())

Each mapping field shows the mapping's source name, a type-appropriate widget and help text, and
cleans through mappings.normalise_value — so `form.attributes()` holds exactly the strings that
will be stored and sent. Empty fields mean what empty cells mean in an import
(mappings.normalise_source_values): left out of the update, except for a mapping that sends
empty values, where an empty field is sent empty and clears the attribute (its help text says
so). Attributes without an active mapping cannot be staged: the form offers no field for them
and refuses to save an update that still carries one. The whole update then goes through
workflow.check_content, the same checks as the import and the services.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils.html import escape

from . import mappings, workflow
from .models import AttributeMapping, ProfileUpdate, TargetConnection
from .validation import identity_errors

Type = AttributeMapping.ValueType
FIELD_PREFIX = "attr_"

_TYPE_HINTS = {
    Type.TEXT: "Text",
    Type.INTEGER: "Whole number, e.g. 42",
    Type.DECIMAL: "Decimal number, e.g. 12.50 (sent without exponent or trailing zeros)",
    Type.BOOLEAN: "Yes or no (sent as true/false)",
    Type.DATE: "Date, sent as YYYY-MM-DD",
    Type.DATETIME: "Date and time in UTC, sent as YYYY-MM-DDTHH:MM:SSZ",
    Type.CHOICE: "One of the listed values",
}


class MappingField(forms.CharField):
    """A form field whose cleaned value is the mapping's normal form (or None: not sent)."""

    def __init__(self, mapping: AttributeMapping, **kwargs: Any) -> None:
        self.mapping = mapping
        kwargs.setdefault("label", mapping.label or mapping.source_name)
        kwargs.setdefault("required", mapping.required)
        kwargs.setdefault("help_text", _help_text(mapping))
        kwargs.setdefault("widget", _widget(mapping))
        # Whitespace handling is the mapping's (its trim flag), not Django's.
        super().__init__(strip=False, **kwargs)

    def clean(self, value: Any) -> str | None:
        value = super().clean(value)
        mapping = self.mapping
        if (value is None or value.strip() == "") and not (mapping.required or mapping.send_empty):
            return None  # not part of the update
        return mappings.normalise_value(mapping, value)


def _help_text(mapping: AttributeMapping) -> str:
    """The field's help, escaped here: Django renders form help text as HTML (the admin's
    templates mark it safe), and every part of it but our own words is operator-written."""
    return escape(" ".join(p for p in _help_parts(mapping) if p.strip(". ")))


def _transform_text(mapping: AttributeMapping) -> str:
    """What the mapping does to a value before it is stored and sent, said plainly."""
    steps = []
    if mapping.trim:
        steps.append("surrounding spaces are removed")
    if mapping.case_transform == AttributeMapping.CaseTransform.LOWER:
        steps.append("it is changed to lower case")
    elif mapping.case_transform == AttributeMapping.CaseTransform.UPPER:
        steps.append("it is changed to UPPER CASE")
    if steps:
        return "Before it is sent, " + " and ".join(steps) + "."
    if mapping.value_type in (Type.TEXT, Type.CHOICE):
        return "Sent exactly as typed: no trimming, no change of case."
    return "Not trimmed: surrounding spaces are refused."


def _help_parts(mapping: AttributeMapping) -> list[str]:
    parts = [f"→ profile.{mapping.target_name}.", _TYPE_HINTS.get(mapping.value_type, "") + ".",
             _transform_text(mapping)]
    if mapping.label:
        parts.append(f"Column {mapping.source_name} in import files.")
    # A choice is one of the listed values: a length limit would only puzzle the reader.
    if mapping.value_type in (Type.TEXT, Type.INTEGER, Type.DECIMAL):
        parts.append(f"At most {mapping.max_length} characters.")
    if mapping.pattern:
        parts.append(f"Must match {mapping.pattern}.")
    if mapping.send_empty and not mapping.required:
        parts.append("Left empty, it is sent empty (clearing the attribute).")
    elif not mapping.required:
        parts.append("Leave empty to leave it out.")
    if mapping.help_text:
        parts.append(mapping.help_text)
    return parts


def _widget(mapping: AttributeMapping) -> forms.Widget:
    kind = mapping.value_type
    if kind == Type.CHOICE:
        return forms.Select(choices=[("", "—")] + [(c, c) for c in mapping.choice_list])
    if kind == Type.BOOLEAN:
        return forms.Select(choices=[("", "—"), ("true", "true"), ("false", "false")])
    if kind == Type.INTEGER:
        return forms.TextInput(attrs={"inputmode": "numeric"})
    if kind == Type.DECIMAL:
        return forms.TextInput(attrs={"inputmode": "decimal"})
    if kind == Type.DATE:
        return forms.DateInput(attrs={"type": "date"})
    if kind == Type.DATETIME:
        return forms.DateTimeInput(attrs={"type": "datetime-local", "step": "1"})
    if mapping.max_length > 256:
        return forms.Textarea(attrs={"rows": 3, "maxlength": mapping.max_length})
    return forms.TextInput(attrs={"maxlength": mapping.max_length, "size": 60})


def _display(mapping: AttributeMapping, value: str) -> str:
    # <input type="datetime-local"> shows "YYYY-MM-DDTHH:MM:SS" without the zone; we store UTC.
    if mapping.value_type == Type.DATETIME and value.endswith("Z"):
        return value[:-1]
    return value


def supersede_field(help_text: str) -> forms.BooleanField:
    """The box that lets a new update cancel (supersede) the open ones it conflicts with — the
    staging form's and the import form's, each saying what it means there."""
    return forms.BooleanField(required=False, label="Cancel the open update(s) and replace them",
                              help_text=help_text)


class StagingForm(forms.ModelForm):
    """The one staging form: the update's own fields, to which staging_form_class adds one field
    per active mapping of the connection. It checks what it holds (the fields, then the whole
    content with workflow.check_content) and saves nothing: the caller stages or edits with
    `service_kwargs()`. The admin's form (admin/updates.AdminStagingForm) is this form with the
    admin's widgets, saving through the services when it validates."""

    # Never trimmed: an identity with stray whitespace is refused with a message, not altered.
    identity = forms.CharField(
        max_length=256, strip=False, label="Visitor identity",
        help_text="Exactly as Target knows it: case matters and nothing is trimmed for you.")
    # One open change per visitor and attribute (updates/open_changes.py): without this, a
    # visitor's open update setting one of the same attributes refuses the save, named.
    supersede = supersede_field(
        "Only if this visitor has an open update setting one of these attributes: that update "
        "is cancelled (audited as superseded by this one). This one needs its own approval.")

    class Meta:
        model = ProfileUpdate
        fields = ["identity_type", "identity", "reason", "not_before"]
        labels = {
            "identity_type": "Identity type",
            "reason": "Reason",
            "not_before": "Earliest send time (UTC)",
        }
        help_texts = {
            "identity_type": "mboxPC is Target's own visitor id (tntId); mbox3rdPartyId is your "
                             "customer id as Target knows it.",
            "reason": "Optional, shown to supervisors, e.g. \"loan funded — call centre\".",
            "not_before": "Optional. Empty: sent as soon as it is approved.",
        }
        widgets = {"not_before": forms.DateTimeInput(attrs={"type": "datetime-local"})}


    connection: TargetConnection
    connection_mappings: list[AttributeMapping]
    mapping_fields: dict[str, AttributeMapping]  # form field name -> mapping
    _stored_attributes: dict[str, str] = {}  # of the update being edited

    @classmethod
    def field_name(cls, mapping: AttributeMapping) -> str:
        return f"{FIELD_PREFIX}{mapping.pk}"

    @classmethod
    def initial_for(cls, update: ProfileUpdate | None) -> dict[str, Any]:
        """Initial data showing an existing update's stored values in the mapping fields."""
        if update is None:
            return {}
        initial: dict[str, Any] = {"identity_type": update.identity_type,
                                   "identity": update.identity, "reason": update.reason,
                                   "not_before": update.not_before}
        for name, mapping in cls.mapping_fields.items():
            value = (update.attributes or {}).get(mapping.target_name)
            if value is not None:
                initial[name] = _display(mapping, value)
        return initial

    def attributes(self) -> dict[str, str]:
        """{Target attribute name: the normalised value to send} from the cleaned data."""
        data = self.cleaned_data
        result: dict[str, str] = {}
        for name, mapping in self.mapping_fields.items():
            if data.get(name) is not None:
                result[mapping.target_name] = data[name]
        return result

    def service_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for workflow.update_stage / update_edit."""
        kwargs = {"attributes": self.attributes()}
        for name in ("identity_type", "identity", "reason", "not_before", "supersede"):
            if name in self.fields:
                kwargs[name] = self.cleaned_data.get(name)
        if kwargs.get("reason") is None and "reason" in kwargs:
            kwargs["reason"] = ""
        if "supersede" in kwargs:
            kwargs["supersede"] = bool(kwargs["supersede"])
        return kwargs

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        unmapped = sorted(set(self._stored_attributes) -
                          {m.target_name for m in self.connection_mappings})
        if unmapped:
            self.add_error(None, ValidationError(
                "This update carries %(names)s, which no active mapping of this connection "
                "covers; an attribute without an active mapping cannot be staged. Define or "
                "re-activate the mapping first.", code="unmapped",
                params={"names": ", ".join(unmapped)}))
        if "identity" not in self.fields:
            return cleaned
        if self.errors:
            # check_content would stop at the first problem; report the identity's problems
            # together with the fields' own, so one pass shows everything to fix.
            for key, messages in identity_errors(cleaned.get("identity_type", ""),
                                                 cleaned.get("identity", "")).items():
                if key in self.fields and key not in self.errors:
                    self.add_error(key, messages)
            return cleaned
        reason = cleaned.get("reason") if "reason" in self.fields else None
        try:
            workflow.check_content(connection=self.connection,
                                   identity_type=cleaned.get("identity_type", ""),
                                   identity=cleaned.get("identity", ""),
                                   attributes=self.attributes(),
                                   connection_mappings=self.connection_mappings,
                                   reason=reason)
        except ValidationError as error:
            for key, messages in error.message_dict.items():
                self.add_error(key if key in self.fields else None, messages)
        return cleaned

    def _post_clean(self) -> None:
        # No model validation here: the services validate the update in full when it is staged.
        pass


def staging_form_class(connection: TargetConnection, *, base: type[StagingForm] = StagingForm,
                       update: ProfileUpdate | None = None) -> type[StagingForm]:
    """A form class for `connection`: `base`'s fields (StagingForm's or a subclass's) plus one
    field per active mapping. Pass the update being edited so the form can refuse attributes
    that lost their mapping.
    """
    active = mappings.active_mappings(connection)
    attrs: dict[str, Any] = {
        "connection": connection,
        "connection_mappings": active,
        "mapping_fields": {},
        "_stored_attributes": dict(update.attributes) if update is not None else {},
    }
    for mapping in active:
        name = StagingForm.field_name(mapping)
        attrs[name] = MappingField(mapping)
        attrs["mapping_fields"][name] = mapping
    return type(f"StagingForm_{connection.client_code}", (base,), attrs)
