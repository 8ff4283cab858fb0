// Progressive enhancement: every page works without this file. It adds drag-and-drop and
// paste for image search and uploads, a preview of the query image, and per-file upload progress.
(function () {
  "use strict";
  const PREVIEW_KEY = "gallery:pending-preview";

  function imageFiles(list) {
    return Array.from(list || []).filter((file) => file.type.startsWith("image/"));
  }

  function setFiles(input, files) {
    const transfer = new DataTransfer();
    files.forEach((file) => transfer.items.add(file));
    input.files = transfer.files;
    input.dispatchEvent(new Event("change", { bubbles: true }));
  }

  // A small JPEG of the query image, kept in this tab only (sessionStorage), never uploaded.
  function rememberPreview(file) {
    return new Promise((resolve) => {
      const img = new Image();
      img.onload = () => {
        const scale = Math.min(1, 240 / Math.max(img.width, img.height));
        const canvas = document.createElement("canvas");
        canvas.width = Math.round(img.width * scale);
        canvas.height = Math.round(img.height * scale);
        canvas.getContext("2d").drawImage(img, 0, 0, canvas.width, canvas.height);
        try { sessionStorage.setItem(PREVIEW_KEY, canvas.toDataURL("image/jpeg", 0.8)); } catch (e) { /* full: no preview */ }
        URL.revokeObjectURL(img.src);
        resolve();
      };
      img.onerror = () => resolve();
      img.src = URL.createObjectURL(file);
    });
  }

  function showQueryPreview() {
    const preview = document.getElementById("query-preview");
    if (!preview || !preview.dataset.token) return;
    const key = "gallery:preview:" + preview.dataset.token;
    const pending = sessionStorage.getItem(PREVIEW_KEY);
    if (pending && !sessionStorage.getItem(key)) {
      sessionStorage.setItem(key, pending);
      sessionStorage.removeItem(PREVIEW_KEY);
    }
    const data = sessionStorage.getItem(key);
    if (data) { preview.src = data; preview.hidden = false; }
  }

  function initImageSearch() {
    const form = document.getElementById("image-search-form");
    if (!form) return;
    const panel = document.getElementById("image-search");
    const input = document.getElementById("image-query");
    const thumb = document.getElementById("image-query-preview");
    const balance = document.getElementById("balance");
    const out = document.getElementById("balance-out");
    balance.addEventListener("input", () => { out.value = balance.value; });
    input.addEventListener("change", () => {
      const file = imageFiles(input.files)[0];
      if (file) { thumb.src = URL.createObjectURL(file); thumb.hidden = false; }
    });
    form.addEventListener("submit", async (event) => {
      const file = imageFiles(input.files)[0];
      if (!file || form.dataset.previewed) return;
      event.preventDefault();
      await rememberPreview(file);
      form.dataset.previewed = "1";
      form.submit();
    });
    // Search with a dropped or pasted image: straight away, unless words are being added.
    const searchWith = (file) => {
      panel.open = true;
      setFiles(input, [file]);
      if (!document.getElementById("combined-q").value.trim()) form.requestSubmit();
    };
    if (!document.getElementById("upload-form")) {
      document.addEventListener("drop", (event) => {
        const file = imageFiles(event.dataTransfer.files)[0];
        if (!file) return;
        event.preventDefault();
        searchWith(file);
      });
    }
    document.addEventListener("paste", (event) => {
      if (document.getElementById("upload-form")) return;
      const file = imageFiles(event.clipboardData && event.clipboardData.files)[0];
      if (file) { event.preventDefault(); searchWith(file); }
    });
  }

  function initDropZones() {
    document.addEventListener("dragover", (event) => {
      if (Array.from(event.dataTransfer.types).includes("Files")) event.preventDefault();
    });
    document.querySelectorAll(".drop-zone").forEach((zone) => {
      const input = document.getElementById(zone.dataset.dropTarget);
      zone.addEventListener("dragenter", () => zone.classList.add("drag-over"));
      zone.addEventListener("dragleave", () => zone.classList.remove("drag-over"));
      zone.addEventListener("drop", (event) => {
        zone.classList.remove("drag-over");
        const files = imageFiles(event.dataTransfer.files);
        if (!files.length || input.id === "image-query") return; // the page handler searches
        event.preventDefault();
        event.stopPropagation();
        setFiles(input, input.multiple ? files : files.slice(0, 1));
      });
    });
  }

  function initUpload() {
    const form = document.getElementById("upload-form");
    if (!form) return;
    const input = document.getElementById("files");
    const list = document.getElementById("upload-list");
    const summary = document.getElementById("upload-summary");
    document.addEventListener("drop", (event) => {
      const files = imageFiles(event.dataTransfer.files);
      if (files.length) { event.preventDefault(); setFiles(input, files); }
    });
    input.addEventListener("change", () => {
      list.replaceChildren(...Array.from(input.files).map((file) => {
        const item = document.createElement("li");
        item.className = "upload-item";
        item.innerHTML = '<img alt=""><div class="flex-grow-1"><div class="small name"></div>' +
          '<div class="progress" role="progressbar" aria-valuemin="0" aria-valuemax="100" aria-valuenow="0">' +
          '<div class="progress-bar" style="width:0%"></div></div><div class="small outcome"></div></div>';
        item.querySelector(".name").textContent = file.name;
        item.querySelector(".progress").setAttribute("aria-label", "Upload of " + file.name);
        const thumb = item.querySelector("img");
        thumb.onerror = () => { thumb.style.visibility = "hidden"; };
        if (file.type.startsWith("image/")) thumb.src = URL.createObjectURL(file);
        return item;
      }));
    });
    form.addEventListener("submit", async (event) => {
      const files = Array.from(input.files);
      if (!files.length) return; // the server explains what is missing
      event.preventDefault();
      const results = [];
      const items = list.querySelectorAll(".upload-item");
      for (let i = 0; i < files.length; i++) {
        results.push(await uploadOne(form, files[i], files.length === 1, items[i]));
      }
      summary.replaceChildren(renderSummary(results));
      summary.querySelector("h2").focus();
    });
  }

  // Each file goes to the REST API (the one upload contract), with this browser's session.
  function uploadOne(form, file, single, item) {
    return new Promise((resolve) => {
      const data = new FormData();
      data.append("file", file);
      data.append("description", form.querySelector("[name=description]").value);
      const tags = form.querySelector("[name=tags]");
      if (tags) data.append("tags", tags.value);
      if (single) data.append("title", form.querySelector("[name=title]").value);
      const request = new XMLHttpRequest();
      const bar = item && item.querySelector(".progress-bar");
      request.upload.onprogress = (event) => {
        if (!bar || !event.lengthComputable) return;
        const percent = Math.round((100 * event.loaded) / event.total);
        bar.style.width = percent + "%";
        bar.parentElement.setAttribute("aria-valuenow", percent);
      };
      request.onload = () => {
        let body = {};
        try { body = JSON.parse(request.responseText); } catch (e) { /* not JSON: use the status */ }
        const result = outcome(file.name, request.status, body);
        if (item) {
          bar.style.width = "100%";
          bar.classList.add(result.outcome === "rejected" ? "bg-danger" : result.outcome === "added" ? "bg-success" : "bg-info");
          item.querySelector(".outcome").replaceChildren(...describe(result));
        }
        resolve(result);
      };
      request.onerror = () => resolve({ name: file.name, outcome: "rejected", reason: "The connection failed." });
      request.open("POST", form.dataset.api);
      request.setRequestHeader("Accept", "application/json");
      request.setRequestHeader("X-CSRFToken", form.querySelector("[name=csrfmiddlewaretoken]").value);
      request.send(data);
    });
  }

  function outcome(name, status, body) {
    if (status === 201) return { name, outcome: body.created ? "added" : "present", url: body.page_url, title: body.title || name };
    if (status === 409) return { name, outcome: "present" };
    const problems = body.file || body.detail || body.title || body.description || body.tags;
    const reason = Array.isArray(problems) ? problems.join(" ") : problems;
    return { name, outcome: "rejected", reason: reason || "The server did not accept the upload (" + status + ")." };
  }

  function describe(result) {
    const link = () => { const a = document.createElement("a"); a.href = result.url; a.textContent = result.title; return a; };
    if (result.outcome === "added") return ["✔ Added ", link()];
    if (result.outcome === "present") return result.url ? ["● Already in the gallery: ", link()] : ["● Already in the gallery"];
    return ["✖ Rejected: " + result.reason];
  }

  function renderSummary(results) {
    const count = (outcome) => results.filter((r) => r.outcome === outcome).length;
    const heading = document.createElement("h2");
    heading.className = "h6";
    heading.tabIndex = -1;
    heading.textContent = `Summary: ${count("added")} added, ${count("present")} already present, ${count("rejected")} rejected`;
    return heading;
  }

  function initConfirm() {
    document.querySelectorAll("[data-confirm]").forEach((button) => {
      button.addEventListener("click", (event) => {
        if (!window.confirm(button.dataset.confirm)) event.preventDefault();
      });
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    initDropZones();
    initImageSearch();
    initUpload();
    initConfirm();
    showQueryPreview();
  });
})();
