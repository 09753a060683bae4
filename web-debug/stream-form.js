// The form that adds a stream or edits one: every field the API takes — several inputs (label, URL, priority,
// transport), camera credentials, recording, retention (age and size), restart interval. It builds the
// POST /streams body (a new stream) or the PATCH body (only what an edit may change; credentials only when typed).

import { $, el } from "./dom.js";

const MIB = 1024 * 1024;

function inputRow(input = { label: "", url: "", priority: 0, transport: "tcp" }) {
  const row = el("div", { class: "input-row" });
  const label = el("input", { name: "label", required: true, maxlength: 64, placeholder: "main", "aria-label": "input label" });
  label.value = input.label;
  const url = el("input", { name: "url", required: true, class: "url", "aria-label": "input URL",
    placeholder: "rtsp://192.168.1.20:554/stream1 or testsrc://?width=640&height=360" });
  url.value = input.url;
  const prio = el("input", { name: "priority", type: "number", step: 1, class: "short", "aria-label": "priority" });
  prio.value = String(input.priority);
  const transport = el("select", { name: "transport", "aria-label": "transport" });
  transport.append(new Option("tcp", "tcp"), new Option("udp", "udp"));
  transport.value = input.transport;
  const remove = el("button", { type: "button", class: "remove", title: "remove this input" }, "×");
  remove.addEventListener("click", () => {
    if (row.parentElement.children.length > 1) row.remove();
  });
  row.append(label, url, prio, transport, remove);
  return row;
}

export class StreamForm {
  /** `onSubmit(kind, id, body)` with kind "create" or "edit"; `onCancel()`. */
  constructor(form, { onSubmit, onCancel }) {
    this.form = form;
    this.editing = null;
    $("#add-input", form).addEventListener("click", () => $("#inputs", form).append(inputRow({
      label: `input${$("#inputs", form).children.length + 1}`, url: "", priority: $("#inputs", form).children.length, transport: "tcp",
    })));
    $("#form-cancel", form).addEventListener("click", () => onCancel());
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      onSubmit(this.editing ? "edit" : "create", this.editing || this.field("source_id"), this.body());
    });
    this.reset();
  }

  field(name) {
    return this.form.elements.namedItem(name).value.trim();
  }

  /** Empties the form for a new stream. */
  reset() {
    this.editing = null;
    this.form.reset();
    this.form.elements.namedItem("source_id").readOnly = false;
    $("#inputs", this.form).replaceChildren(inputRow({ label: "main", url: "", priority: 0, transport: "tcp" }));
    $("#form-title").textContent = "Add a stream";
    $("#form-submit", this.form).textContent = "Add";
    $("#form-cancel", this.form).hidden = true;
    $("#cred-note", this.form).textContent = "";
  }

  /** Fills the form from a StreamView to edit it. */
  edit(s) {
    this.reset();
    this.editing = s.source_id;
    const f = this.form.elements;
    f.namedItem("source_id").value = s.source_id;
    f.namedItem("source_id").readOnly = true;
    $("#inputs", this.form).replaceChildren(...s.inputs.map((i) => inputRow(i)));
    f.namedItem("should_record").checked = s.should_record;
    f.namedItem("restart_interval_secs").value = String(s.restart_interval_secs || "");
    f.namedItem("max_age_hours").value = s.retention?.max_age_secs ? String(s.retention.max_age_secs / 3600) : "";
    f.namedItem("max_size_mib").value = s.retention?.max_bytes ? String(s.retention.max_bytes / MIB) : "";
    $("#form-title").textContent = "Edit stream ";
    $("#form-title").append(el("code", {}, s.source_id));
    $("#form-submit", this.form).textContent = "Save";
    $("#form-cancel", this.form).hidden = false;
    $("#cred-note", this.form).textContent = s.has_credentials
      ? "Credentials are stored; leave both fields empty to keep them, tick \"clear\" to remove them."
      : "No credentials stored.";
  }

  /** The request body. Values are checked by the gateway, whose refusal the page shows in words. */
  body() {
    const f = this.form.elements;
    const inputs = [...$("#inputs", this.form).children].map((row) => ({
      label: row.querySelector("[name=label]").value.trim(),
      url: row.querySelector("[name=url]").value.trim(),
      priority: Number(row.querySelector("[name=priority]").value || 0),
      transport: row.querySelector("[name=transport]").value,
    }));
    const retention = {};
    const hours = this.field("max_age_hours");
    if (hours) retention.max_age_secs = Math.round(Number(hours) * 3600);
    const mib = this.field("max_size_mib");
    if (mib) retention.max_bytes = Math.round(Number(mib) * MIB);
    const restart = this.field("restart_interval_secs");
    const body = {
      rtsp_inputs: inputs,
      should_record: f.namedItem("should_record").checked,
      retention,
    };
    if (restart) body.restart_interval_secs = Number(restart);
    const user = this.field("username");
    const pass = f.namedItem("password").value;
    if (this.editing) {
      if (f.namedItem("clear_credentials").checked) body.password = null;
      else {
        if (user) body.username = user;
        if (pass) body.password = pass;
      }
      return body;
    }
    if (user) body.username = user;
    if (pass) body.password = pass;
    return { source_id: this.field("source_id"), ...body };
  }
}
