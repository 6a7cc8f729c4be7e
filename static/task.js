// Live updates for a task's status page: new log lines and state changes arrive over
// server-sent events. Without JavaScript the page still shows everything up to its rendering.
(function () {
  "use strict";
  var task = document.getElementById("task");
  if (!task || task.dataset.terminal === "true" || !window.EventSource) return;
  var log = document.getElementById("log");
  var timeline = document.getElementById("timeline");
  var state = document.getElementById("state");
  var url = "/tasks/" + encodeURIComponent(task.dataset.task) + "/events?after=" + task.dataset.lastSeq;
  var source = new EventSource(url);
  function append(list, html, seq) {
    // After a reconnect the server resumes from the last id; ids already shown are skipped.
    if (document.getElementById("e" + seq)) return;
    list.insertAdjacentHTML("beforeend", html);
    task.dataset.lastSeq = seq;
  }
  source.addEventListener("line", function (e) {
    var d = JSON.parse(e.data);
    append(log, d.html, d.seq);
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
