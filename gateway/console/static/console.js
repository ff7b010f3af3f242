// The console's only script: "select all" on the message browser. Pages work without it.
(function () {
  var all = document.getElementById("all");
  if (!all) return;
  all.addEventListener("change", function () {
    document.querySelectorAll('#messages input[name="ids"]').forEach(function (box) {
      box.checked = all.checked;
    });
  });
})();
