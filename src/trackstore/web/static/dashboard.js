// The dashboard: one fetch of /api/v1/dashboard, charts drawn as inline
// SVG. No libraries, nothing from the internet. Every chart's <svg> has
// data-chart="<name>" and every bar data-key and data-value, so a test
// (and a curious reader) can check what was drawn against the API.
(function () {
  'use strict';
  var NS = 'http://www.w3.org/2000/svg';
  var COLORS = {visits: '#3b6fe0', customers: '#14a38b', orders: '#e07a3b',
                conversion: '#8a55d6', dist: '#3b6fe0', dist2: '#14a38b',
                pages: '#3b6fe0', queries: '#e07a3b'};

  function svg(tag, attrs, parent) {
    var node = document.createElementNS(NS, tag);
    Object.keys(attrs || {}).forEach(function (k) {
      node.setAttribute(k, attrs[k]);
    });
    if (parent) { parent.appendChild(node); }
    return node;
  }

  function text(parent, x, y, content, attrs) {
    var node = svg('text', Object.assign({x: x, y: y}, attrs || {}), parent);
    node.textContent = content;
    return node;
  }

  function fmt(n) {
    if (n === null || n === undefined) { return '–'; }
    return Number(n).toLocaleString('en-US');
  }

  function pct(x) { return (100 * x).toFixed(1) + '%'; }

  function niceMax(max) {
    if (max <= 0) { return 1; }
    var p = Math.pow(10, Math.floor(Math.log10(max)));
    var steps = [1, 2, 2.5, 5, 10];
    for (var i = 0; i < steps.length; i++) {
      if (steps[i] * p >= max) { return steps[i] * p; }
    }
    return 10 * p;
  }

  function empty(el, name) {
    el.innerHTML = '';
    var root = svg('svg', {viewBox: '0 0 600 60', 'data-chart': name,
                           'data-count': 0}, el);
    text(root, 300, 35, 'no data yet', {'text-anchor': 'middle'});
  }

  // Vertical bars: items are {key, value, label}.
  function columns(el, name, items, color, format) {
    if (!items.length) { return empty(el, name); }
    format = format || fmt;
    var W = 600, H = 220, L = 48, R = 10, T = 12, B = 34;
    var root = svg('svg', {viewBox: '0 0 ' + W + ' ' + H,
                           'data-chart': name, 'data-count': items.length,
                           role: 'img'}, el);
    var max = niceMax(Math.max.apply(null, items.map(function (d) {
      return d.value; })));
    var plotW = W - L - R, plotH = H - T - B;
    for (var g = 0; g <= 4; g++) {
      var y = T + plotH - plotH * g / 4;
      svg('line', {x1: L, x2: W - R, y1: y, y2: y, 'class': 'grid-line'},
          root);
      text(root, L - 6, y + 4, format(max * g / 4),
           {'text-anchor': 'end'});
    }
    var step = plotW / items.length;
    var every = Math.ceil(items.length / 10);
    items.forEach(function (d, i) {
      var h = plotH * d.value / max;
      var bar = svg('rect', {
        x: L + i * step + step * 0.12, y: T + plotH - h,
        width: Math.max(step * 0.76, 1), height: Math.max(h, 0),
        rx: 2, fill: color, 'class': 'datum',
        'data-key': d.key, 'data-value': d.value}, root);
      svg('title', {}, bar).textContent = d.label + ': ' + format(d.value);
      if (i % every === 0) {
        text(root, L + i * step + step / 2, H - B + 16, d.label,
             {'text-anchor': 'middle'});
      }
    });
  }

  // Horizontal bars with names: items are {name, count}.
  function barList(el, name, items, color) {
    if (!items.length) { return empty(el, name); }
    var W = 600, row = 26, H = items.length * row + 6, L = 250, R = 60;
    var root = svg('svg', {viewBox: '0 0 ' + W + ' ' + H,
                           'data-chart': name, 'data-count': items.length,
                           role: 'img'}, el);
    var max = Math.max.apply(null, items.map(function (d) {
      return d.count; })) || 1;
    items.forEach(function (d, i) {
      var y = 3 + i * row;
      var label = d.name.length > 38 ? d.name.slice(0, 37) + '…' : d.name;
      text(root, 0, y + 17, label, {'class': 'bar-label'});
      var bar = svg('rect', {
        x: L, y: y + 4, width: Math.max((W - L - R) * d.count / max, 1),
        height: row - 9, rx: 3, fill: color, 'class': 'datum',
        'data-key': d.name, 'data-value': d.count}, root);
      svg('title', {}, bar).textContent = d.name + ': ' + fmt(d.count);
      text(root, L + (W - L - R) * d.count / max + 6, y + 17,
           fmt(d.count), {'class': 'bar-count'});
    });
  }

  function kpis(el, data) {
    var t = data.totals, o = data.orders;
    var cards = [
      ['Visits', fmt(t.visits), fmt(t.hits) + ' hits'],
      ['Customers', fmt(t.customers), 'with a customer id'],
      ['Orders', fmt(t.orders), fmt(t.ordering_sessions) +
       ' ordering sessions'],
      ['Conversion', pct(t.conversion), 'ordering sessions / visits'],
      ['Sessions before order', fmt(o.median_visits_before_order),
       'median'],
      ['Minutes before order',
       o.median_session_duration_minutes_before_order === null ? '–' :
       o.median_session_duration_minutes_before_order.toFixed(1),
       'median, in those sessions']];
    el.innerHTML = '';
    cards.forEach(function (c) {
      var div = document.createElement('div');
      div.className = 'kpi';
      ['label', 'value', 'note'].forEach(function (cls, i) {
        var span = document.createElement('div');
        span.className = cls;
        span.textContent = c[i];
        div.appendChild(span);
      });
      el.appendChild(div);
    });
  }

  function batches(el, list) {
    if (!list.length) {
      el.innerHTML = '<div class="empty">no batches yet</div>';
      return;
    }
    var table = document.createElement('table');
    table.setAttribute('data-table', 'batches');
    table.innerHTML = '<thead><tr><th>batch</th><th>status</th>' +
      '<th class="num">sessions</th><th>created (UTC)</th>' +
      '<th>release</th></tr></thead>';
    var body = document.createElement('tbody');
    list.slice().reverse().forEach(function (b) {
      var tr = document.createElement('tr');
      tr.setAttribute('data-key', b.batch_id);
      tr.setAttribute('data-value', b.session_counter);
      tr.setAttribute('data-status', b.status);
      var cells = [b.batch_id, null, fmt(b.session_counter),
                   new Date(b.created_at * 1000).toISOString()
                     .slice(0, 16).replace('T', ' '),
                   b.release_id || ''];
      cells.forEach(function (c, i) {
        var td = document.createElement('td');
        if (i === 1) {
          var badge = document.createElement('span');
          badge.className = 'badge ' + b.status;
          badge.textContent = b.status.replace('_', ' ');
          td.appendChild(badge);
        } else {
          td.textContent = c;
        }
        if (i === 2) { td.className = 'num'; }
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
    table.appendChild(body);
    el.innerHTML = '';
    el.appendChild(table);
  }

  function care(el, hits) {
    var rows = [
      ['late', 'Late hits (stored as sessions of their own)', hits.late],
      ['late_sessions', 'Late sessions', hits.late_sessions],
      ['rejected', 'Rejected hits (malformed)', hits.rejected],
      ['duplicates', 'Duplicate hits skipped', hits.duplicates],
      ['bots', 'Bot hits left out', hits.bots]];
    el.innerHTML = '';
    rows.forEach(function (r) {
      var div = document.createElement('div');
      div.className = 'care-row';
      div.setAttribute('data-key', r[0]);
      div.setAttribute('data-value', r[2] === null ? '' : r[2]);
      var label = document.createElement('span');
      label.textContent = r[1];
      var value = document.createElement('span');
      value.className = 'value' + (r[2] ? ' warn' : '');
      value.textContent = r[2] === null || r[2] === undefined ?
        'not recorded' : fmt(r[2]);
      div.appendChild(label);
      div.appendChild(value);
      el.appendChild(div);
    });
  }

  function draw(data) {
    var $ = function (id) { return document.getElementById(id); };
    kpis($('kpis'), data);
    ['visits', 'customers', 'orders'].forEach(function (name) {
      columns($('chart-' + name), name + '-per-day',
              data.days.map(function (d) {
                return {key: d.day, value: d[name], label: d.day.slice(5)};
              }), COLORS[name]);
    });
    columns($('chart-conversion'), 'conversion-per-day',
            data.days.map(function (d) {
              return {key: d.day, value: d.conversion,
                      label: d.day.slice(5)};
            }), COLORS.conversion, pct);
    columns($('chart-visits-before'), 'visits-before-order',
            data.visits_before_order.map(function (d) {
              return {key: d.bin, value: d.count, label: d.bin};
            }), COLORS.dist);
    columns($('chart-minutes-before'), 'minutes-before-order',
            data.minutes_before_order.map(function (d) {
              return {key: d.bin, value: d.count, label: d.bin};
            }), COLORS.dist2);
    var o = data.orders;
    $('median-visits').textContent = 'median ' +
      fmt(o.median_visits_before_order) + ' · ' +
      fmt(o.ordering_sessions) + ' ordering sessions';
    $('median-minutes').textContent = 'median ' +
      (o.median_session_duration_minutes_before_order === null ? '–' :
       o.median_session_duration_minutes_before_order.toFixed(1)) +
      ' minutes';
    barList($('chart-pages'), 'top-pages', data.top_pages, COLORS.pages);
    barList($('chart-queries'), 'top-queries', data.top_queries,
            COLORS.queries);
    batches($('batches'), data.batches);
    care($('care'), data.hits);
    var status = $('status');
    status.textContent = 'updated ' + new Date().toISOString()
      .slice(0, 19).replace('T', ' ') + ' UTC';
    document.body.setAttribute('data-drawn', 'true');
  }

  function load() {
    fetch('/api/v1/dashboard', {credentials: 'same-origin'})
      .then(function (r) {
        if (!r.ok) { throw new Error('HTTP ' + r.status); }
        return r.json();
      })
      .then(draw)
      .catch(function (e) {
        document.getElementById('status').textContent =
          'could not load the data: ' + e.message;
      });
  }

  load();
}());
