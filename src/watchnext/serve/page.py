"""The demo web page: pick a user and the video being watched, see the watch-next list.

One self-contained HTML document (no external assets, so it works offline and in CI), calling
the same JSON API as every other client. The device is picked from the devices the served model
knows (``GET /v1/model``), so the page cannot send one the API would refuse. Videos have no
real thumbnails here, so each row shows a text card (id, length, how often it was shown) in their
place.
"""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>watchnext</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }
  h1 { font-size: 20px; margin: 0 0 4px; }
  form { display: flex; flex-wrap: wrap; gap: 12px; align-items: end; margin: 16px 0; }
  label { display: flex; flex-direction: column; font-size: 12px; color: #555; }
  input, select { font: inherit; padding: 4px 6px; width: 160px; }
  input[type=number] { width: 60px; }
  button { font: inherit; padding: 5px 14px; cursor: pointer; }
  table { border-collapse: collapse; margin-top: 8px; }
  th, td { padding: 4px 8px; border-bottom: 1px solid #ddd; text-align: right; }
  th { background: #f4f4f4; font-weight: 600; }
  td.card { text-align: left; }
  .thumb { display: inline-block; width: 64px; height: 36px; line-height: 36px; text-align: center;
           color: #fff; border-radius: 4px; font-size: 11px; margin-right: 8px;
           vertical-align: middle; }
  .src { font-size: 12px; color: #555; text-align: left; }
  #status { color: #555; } #error { color: #b00020; white-space: pre-wrap; }
</style>
</head>
<body>
<h1>watchnext &mdash; what to watch next</h1>
<div id="model">loading model&hellip;</div>
<form id="query">
  <label>User <input id="user" list="users" placeholder="user id (empty = anonymous)"></label>
  <label>Watching <input id="video" list="videos" placeholder="video id"></label>
  <label>Device <select id="device" disabled><option value="">(none)</option></select></label>
  <label>k <input id="k" type="number" min="1" max="100" value="10"></label>
  <button id="go" type="submit">Recommend</button>
</form>
<datalist id="users"></datalist><datalist id="videos"></datalist>
<div id="status"></div><div id="error"></div>
<table id="results"><thead><tr id="header"></tr></thead><tbody></tbody></table>
<script>
const $ = (id) => document.getElementById(id);
let lastVideo = {};
function colour(id) {
  let h = 0; for (const c of id) { h = (h * 31 + c.charCodeAt(0)) % 360; }
  return `hsl(${h}, 55%, 45%)`;
}
function card(item) {
  const d = item.details || {};
  const ms = d.duration_ms;
  const len = ms ? `${Math.floor(ms / 60000)}:${String(Math.round(ms / 1000) % 60).padStart(2, "0")}`
                 : "";
  const seen = d.video_id_hist_n;
  const shown = seen !== undefined && seen !== null
    ? ` &middot; ~${Math.round(Math.expm1(seen))} past impressions` : "";
  return `<span class="thumb" style="background:${colour(item.video_id)}">&#9654; ${len}</span>` +
         `<b>video ${escapeHtml(item.video_id)}</b>${item.known_video ? "" : " (new)"}${shown}`;
}
function cell(text, cls) { const td = document.createElement("td"); if (cls) td.className = cls;
  td.innerHTML = text; return td; }
function escapeHtml(s) { return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`); }
async function loadExamples() {
  const [model, ex] = await Promise.all([fetch("/v1/model").then((r) => r.json()),
                                         fetch("/v1/examples").then((r) => r.json())]);
  $("model").textContent = model.version
    ? `model ${model.version} (${model.backend}), ${model.users} users, ${model.videos} videos`
    : "no model loaded";
  for (const d of model.devices || []) {
    const o = document.createElement("option"); o.value = d; o.textContent = d;
    $("device").appendChild(o);
  }
  $("device").disabled = !(model.devices || []).length;
  $("device").title = $("device").disabled ? "this model has no device input" : "";
  for (const u of ex.users) {
    lastVideo[u.user_id] = u.last_video;
    const o = document.createElement("option"); o.value = u.user_id;
    o.label = `last watched ${u.last_video}`; $("users").appendChild(o);
  }
  for (const v of ex.videos) {
    const o = document.createElement("option"); o.value = v; $("videos").appendChild(o);
  }
}
$("user").addEventListener("change", () => {
  const v = lastVideo[$("user").value]; if (v && !$("video").value) $("video").value = v;
});
$("query").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("error").textContent = ""; $("status").textContent = "ranking\\u2026";
  const body = { k: Number($("k").value) || 10, details: true };
  if ($("user").value.trim()) body.user_id = $("user").value.trim();
  if ($("video").value.trim()) body.video_id = $("video").value.trim();
  if ($("device").value) body.device = $("device").value;
  const response = await fetch("/v1/watch-next", { method: "POST",
    headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  const data = await response.json();
  const tbody = document.querySelector("#results tbody"); tbody.innerHTML = "";
  if (!response.ok) {
    $("status").textContent = "";
    $("error").textContent = `error ${response.status}: ${JSON.stringify(data.detail)}`;
    return;
  }
  const tasks = data.items.length ? Object.keys(data.items[0].predictions) : [];
  const header = $("header"); header.innerHTML = "";
  for (const name of ["#", "video", "score", ...tasks, "source"]) {
    const th = document.createElement("th"); th.textContent = name; header.appendChild(th);
  }
  for (const item of data.items) {
    const tr = document.createElement("tr"); tr.className = "item";
    tr.dataset.videoId = item.video_id; tr.dataset.source = item.source;
    tr.appendChild(cell(String(item.rank)));
    tr.appendChild(cell(card(item), "card"));
    tr.appendChild(cell(item.score === null ? "n/a" : item.score.toExponential(3)));
    for (const t of tasks) {
      const p = item.predictions[t]; tr.appendChild(cell(p === null ? "n/a" : p.toFixed(3)));
    }
    tr.appendChild(cell(escapeHtml(item.sources.join(", ")), "src"));
    tbody.appendChild(tr);
  }
  const who = data.known_user ? `user ${escapeHtml(data.user_id)}` : "a new user (cold start)";
  const what = data.video_id === null ? "nothing yet"
    : (data.known_video ? `video ${escapeHtml(data.video_id)}` : "an unknown video (cold start)");
  $("status").innerHTML = `${data.items.length} of ${data.candidates} candidates for ${who} ` +
    `watching ${what} &middot; model ${escapeHtml(data.model_version)}`;
});
loadExamples().catch((e) => { $("error").textContent = String(e); });
</script>
</body>
</html>
"""
