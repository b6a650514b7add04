"""The page ``dmlkit serve`` shows at ``/``: drop an image (or choose one), see its neighbours.

Plain HTML and JavaScript, no outside resources: the image goes to ``POST /search`` as a form
upload, the neighbours come back as JSON and are shown with their thumbnails
(``/items/<id>/thumbnail``), score, class and match mark.
"""

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>dmlkit search</title>
<style>
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 1.5em;
       color: #222; }
#drop { border: 3px dashed #888; border-radius: 8px; padding: 2em; text-align: center;
        max-width: 520px; cursor: pointer; }
#drop.over { background: #eef4ff; border-color: #1f5fbf; }
#results { display: flex; flex-wrap: wrap; gap: 10px; margin-top: 1.2em; }
.cell { width: 112px; font-size: 12px; text-align: center; word-break: break-all; }
.cell img { width: 96px; height: 96px; object-fit: contain; image-rendering: pixelated;
            background: #eee; border: 3px solid #ccc; }
.query img { border-color: #1f5fbf; }
.match img { border-color: #1a7f37; } .nomatch img { border-color: #c62828; }
#error { color: #c62828; }
</style></head><body>
<h1>Search by image</h1>
<p id="about"></p>
<div id="drop">Drop an image here, or click to choose one
  <input id="file" type="file" accept="image/*" hidden></div>
<p id="error"></p>
<div id="results"></div>
<script>
const drop = document.getElementById("drop"), file = document.getElementById("file");
const results = document.getElementById("results"), error = document.getElementById("error");
fetch("health").then(r => r.json()).then(h => {
  document.getElementById("about").textContent = h.items + " items, " + h.dim +
    "-d embeddings" + (h.threshold === null ? "" : ", match threshold " + h.threshold.toFixed(4));
});
function cell(src, lines, kind) {
  const div = document.createElement("div"); div.className = "cell " + kind;
  const img = document.createElement("img"); img.src = src; div.appendChild(img);
  for (const line of lines) {
    if (!line) continue;
    div.appendChild(document.createElement("br")); div.appendChild(document.createTextNode(line));
  }
  return div;
}
async function search(f) {
  error.textContent = ""; results.innerHTML = "";
  const form = new FormData(); form.append("image", f);
  const response = await fetch("search?k=10", {method: "POST", body: form});
  const answer = await response.json();
  if (!response.ok) { error.textContent = answer.detail; return; }
  results.appendChild(cell(URL.createObjectURL(f), ["query", f.name], "query"));
  answer.neighbours.forEach((n, i) => {
    const mark = n.match === null ? "" : (n.match ? "match" : "no match");
    const kind = n.match === null ? "" : (n.match ? "match" : "nomatch");
    results.appendChild(cell("items/" + n.id + "/thumbnail",
      ["#" + (i + 1) + " id " + n.id, n.score.toFixed(4), n.class_name, mark], kind));
  });
  document.title = "dmlkit search: " + answer.neighbours.length + " neighbours";
}
drop.addEventListener("click", () => file.click());
file.addEventListener("change", () => { if (file.files.length) search(file.files[0]); });
drop.addEventListener("dragover", e => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", e => {
  e.preventDefault(); drop.classList.remove("over");
  if (e.dataTransfer.files.length) search(e.dataTransfer.files[0]);
});
</script></body></html>
"""
