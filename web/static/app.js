// Riptide's only script: live download progress (Server-Sent Events) and
// the player (direct play, or HLS through the vendored hls.js). Pages work
// without it; this only makes them live.
'use strict';

function fmtBytes(n) {
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return i === 0 ? `${n} B` : `${n.toFixed(1)} ${u[i]}`;
}

function fmtEta(s) {
  if (s == null) return '–';
  if (s >= 3600) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  if (s >= 60) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${s}s`;
}

function peersText(peers, seeds) {
  return `${peers} ${peers === 1 ? 'peer' : 'peers'} (${seeds} ${seeds === 1 ? 'seed' : 'seeds'})`;
}

function liveDownloads(list) {
  const es = new EventSource(list.dataset.live);
  es.addEventListener('torrents', (ev) => {
    const torrents = JSON.parse(ev.data);
    const seen = new Set();
    for (const t of torrents) {
      seen.add(t.info_hash);
      const li = list.querySelector(`li[data-ih="${t.info_hash}"]`);
      if (!li) { location.reload(); return; }
      const pct = (t.progress * 100).toFixed(1);
      li.querySelector('progress').value = pct;
      li.querySelector('.pct').textContent = `${pct}%`;
      if (t.total_bytes > 0) li.querySelector('.size').textContent = fmtBytes(t.total_bytes);
      li.querySelector('.down').textContent = `${fmtBytes(t.download_rate)}/s`;
      li.querySelector('.up').textContent = `${fmtBytes(t.upload_rate)}/s`;
      li.querySelector('.peers').textContent = peersText(t.peers, t.seeds);
      li.querySelector('.eta').textContent = t.state === 'downloading' ? fmtEta(t.eta_secs) : '–';
      const st = li.querySelector('.state');
      st.textContent = t.state;
      st.dataset.state = t.state;
      const err = li.querySelector('.torrent-error');
      err.textContent = t.error || '';
      err.hidden = !t.error;
      const toggle = li.querySelector('button.toggle');
      if (toggle) {
        const paused = t.state === 'paused';
        toggle.textContent = paused ? 'Resume' : 'Pause';
        toggle.form.action = `/downloads/${t.info_hash}/${paused ? 'resume' : 'pause'}`;
      }
    }
    for (const li of list.querySelectorAll('li[data-ih]')) {
      if (!seen.has(li.dataset.ih)) li.remove();
    }
  });
}

function player(video) {
  const start = parseFloat(video.dataset.start || '0');
  const seekToStart = () => { if (start > 0) video.currentTime = start; };
  window.playerErrors = [];
  if (video.dataset.hls) {
    if (window.Hls && Hls.isSupported()) {
      const hls = new Hls();
      hls.on(Hls.Events.ERROR, (_, d) => window.playerErrors.push(`${d.type}:${d.details}`));
      hls.loadSource(video.dataset.hls);
      hls.attachMedia(video);
    } else {
      video.src = video.dataset.hls; // Safari plays HLS natively.
    }
  } else {
    video.src = video.dataset.direct;
  }
  video.addEventListener('loadedmetadata', seekToStart, { once: true });
  video.addEventListener('error', () => window.playerErrors.push(String(video.error && video.error.message)));
  // Watch progress, so "Resume" knows where you stopped.
  let last = 0;
  const save = (finished) => {
    fetch(`/api/v1/library/${video.dataset.film}/progress`, {
      method: 'PUT',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ position_secs: video.currentTime || 0, finished }),
    }).catch(() => {});
  };
  video.addEventListener('timeupdate', () => {
    if (Math.abs(video.currentTime - last) >= 10) { last = video.currentTime; save(false); }
  });
  video.addEventListener('pause', () => save(false));
  video.addEventListener('ended', () => save(true));
}

document.addEventListener('DOMContentLoaded', () => {
  const list = document.getElementById('torrents');
  if (list && window.EventSource) liveDownloads(list);
  const video = document.getElementById('video');
  if (video) player(video);
});
