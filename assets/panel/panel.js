// Flowlytix admin panel: small improvements over pages that work without JavaScript.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // Copy buttons: shown only when there is a script to make them work.
  for (const button of document.querySelectorAll("button[data-copy]")) {
    const source = document.getElementById(button.dataset.copy);
    if (!source || !navigator.clipboard) continue;
    button.hidden = false;
    button.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(source.textContent.trim());
        button.textContent = "Copied";
      } catch {
        button.textContent = "Select the key and copy it";
      }
    });
  }
});
document.addEventListener("DOMContentLoaded", () => {
  // A policy select: mark the chosen policy's row in its table of terms.
  for (const select of document.querySelectorAll("select[data-terms]")) {
    const table = document.getElementById(select.dataset.terms);
    if (!table) continue;
    const mark = () => {
      for (const row of table.querySelectorAll("tr[data-policy]")) {
        row.classList.toggle("chosen", row.dataset.policy === select.value);
      }
    };
    select.addEventListener("change", mark);
    mark();
  }
});
