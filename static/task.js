// Live updates for a task's status page: new log lines and state changes arrive over
// server-sent events. Without JavaScript the page still shows everything up to its rendering.
// The page holds at most MAX_LINES lines of the log: older ones leave it, and the link to older
// lines takes the reader to them.
(function () {
  "use strict";
  var MAX_LINES = 2000;
  var task = document.getElementById("task");
  if (!task || task.dataset.terminal === "true" || task.dataset.live === "false" || !window.EventSource) return;
  var log = document.getElementById("log");
  var timeline = document.getElementById("timeline");
  var state = document.getElementById("state");
  var url = "/tasks/" + encodeURIComponent(task.dataset.task) + "/events?after=" + task.dataset.lastSeq;
  var source = new EventSource(url);
  function olderLink(before) {
    var older = document.getElementById("older");
    if (!older) {
      older = document.createElement("p");
      older.id = "older";
      older.className = "older";
      older.appendChild(document.createElement("a")).textContent = "Older lines";
      log.parentNode.insertBefore(older, log);
    }
    older.firstChild.href = "/tasks/" + encodeURIComponent(task.dataset.task) + "?before=" + before;
  }
  function append(list, html, seq) {
    // After a reconnect the server resumes from the last id; ids already shown are skipped.
    if (document.getElementById("e" + seq)) return;
    list.insertAdjacentHTML("beforeend", html);
    task.dataset.lastSeq = seq;
    if (list === log && log.children.length > MAX_LINES) {
      while (log.children.length > MAX_LINES) log.removeChild(log.firstElementChild);
      olderLink(log.firstElementChild.id.slice(1));
    }
  }
  var setupSection = document.getElementById("setup-section");
  var setup = document.getElementById("setup");
  source.addEventListener("line", function (e) {
    var d = JSON.parse(e.data);
    if (d.kind === "setup" && setup) {
      setupSection.hidden = false;
      append(setup, d.html, d.seq);
    } else {
      append(log, d.html, d.seq);
    }
  });
  source.addEventListener("state", function (e) {
    var d = JSON.parse(e.data);
    append(timeline, d.html, d.seq);
    state.textContent = d.state;
    state.className = "state s-" + d.state;
  });
  source.addEventListener("end", function () {
    source.close();
    task.dataset.terminal = "true";
  });
})();
