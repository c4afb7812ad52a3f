// The Watch page's player: the browser's own HLS playback where it has one
// (Safari, recent Chromium), else hls.js (vendored next to this file) over
// Media Source Extensions. `?player=hls.js` asks for hls.js even where the
// browser plays HLS itself, and hls.js takes over when the browser's own
// playback fails (Chromium's HLS demuxer at times refuses a live stream
// that hls.js plays). Without JavaScript the <video src> still plays
// natively, and the page links the playlist for VLC or mpv.
(function () {
  "use strict";
  var video = document.getElementById("stream");
  if (!video) return;
  var url = video.getAttribute("data-hls");
  var wantHlsJs = /(?:^|[?&])player=hls\.js(?:&|$)/.test(location.search);
  var native = video.canPlayType("application/vnd.apple.mpegurl") !== "";
  var hlsJs = !!(window.Hls && window.Hls.isSupported());

  function playWithHlsJs() {
    video.removeAttribute("src");
    video.load();
    // No worker: it would be a blob: script, which the page's CSP refuses.
    var hls = new window.Hls({ enableWorker: false, lowLatencyMode: false });
    hls.on(window.Hls.Events.ERROR, function (_event, data) {
      if (!data.fatal) return;
      // A stream that is not live yet, or a network hiccup: try again.
      if (data.type === window.Hls.ErrorTypes.NETWORK_ERROR) {
        setTimeout(function () { hls.loadSource(url); }, 3000);
      } else if (data.type === window.Hls.ErrorTypes.MEDIA_ERROR) {
        hls.recoverMediaError();
      }
    });
    hls.loadSource(url);
    hls.attachMedia(video);
    hls.on(window.Hls.Events.MANIFEST_PARSED, function () {
      var playing = video.play();
      if (playing && playing.catch) playing.catch(function () {});
    });
    video.setAttribute("data-player", "hls.js");
  }

  if (native && !wantHlsJs) {
    video.setAttribute("data-player", "native");
    if (hlsJs) {
      if (video.error) {
        playWithHlsJs();
      } else {
        video.addEventListener("error", playWithHlsJs, { once: true });
      }
    }
    return;
  }
  if (!hlsJs) {
    video.setAttribute("data-player", native ? "native" : "none");
    return;
  }
  playWithHlsJs();
})();
