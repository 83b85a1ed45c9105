"""The text box's explanation: the typed text with its most influential words highlighted.

The dashboard asks ``POST /v1/predict`` for ``"explain": EXPLAIN_WORDS`` and colours each
occurrence of a returned word by the sign of its contribution (green: supports the predicted
label, red: argues against it) and its size (opacity, relative to the largest in the text), with
a legend, a title on every mark and a list of the words and their numbers for screen readers.

The API's spans are offsets in Unicode code points (Python string indices); JavaScript strings
index UTF-16 units, in which an emoji such as U+1F60D counts twice. The script therefore cuts the
text by code point (``Array.from``), never with ``substring`` on the spans.
"""

from __future__ import annotations

EXPLAIN_WORDS = 8  # words highlighted: enough to see why, few enough to read at a glance

STYLE = """
#explained-text{line-height:1.9;font-size:14px;margin:8px 0;white-space:pre-wrap;word-break:break-word}
#explained-text mark{border-radius:3px;padding:1px 2px;color:#111}
#explained-text mark.none{background:#eceff1}
.explain-legend{font-size:12px;color:#555}.explain-legend span{display:inline-block;width:12px;height:12px;
border-radius:2px;vertical-align:middle;margin:0 4px 0 10px}
#explanation-list{font-size:12px;margin:4px 0 0;padding-left:20px}
"""

SCRIPT = f"const EXPLAIN_WORDS = {EXPLAIN_WORDS};" + """
function explanationColor(contribution, largest) {
  // opacity 0.15..0.8 by the contribution's size relative to the text's largest
  const alpha = (0.15 + 0.65 * Math.abs(contribution) / largest).toFixed(3);
  return (contribution > 0 ? 'rgba(46,125,50,' : 'rgba(198,40,40,') + alpha + ')';
}
function showExplanation(out, text, prediction) {
  const items = prediction.explanation || [];
  const box = document.createElement('div');
  box.id = 'explanation';
  const heading = document.createElement('p');
  heading.textContent = items.length
    ? 'Why "' + prediction.label + '": the ' + items.length + ' words whose removal changes p(' +
      prediction.label + ') most'
    : 'No words to explain.';
  box.appendChild(heading);
  const chars = Array.from(text);  // code points: the API's offsets (not UTF-16 units)
  const marks = [];
  for (const item of items) for (const [start, end] of item.spans) marks.push([start, end, item]);
  marks.sort((a, b) => a[0] - b[0]);
  const largest = Math.max(1e-12, ...items.map(item => Math.abs(item.contribution)));
  const shown = document.createElement('p');
  shown.id = 'explained-text';
  let at = 0;
  for (const [start, end, item] of marks) {
    if (start < at) continue;  // the spans of one text never overlap; nothing drawn twice if they did
    shown.appendChild(document.createTextNode(chars.slice(at, start).join('')));
    const mark = document.createElement('mark');
    const c = item.contribution;
    mark.className = c > 0 ? 'supports' : (c < 0 ? 'against' : 'none');
    if (c !== 0) mark.style.backgroundColor = explanationColor(c, largest);
    mark.dataset.contribution = String(c);
    mark.title = item.word + ': ' + (c >= 0 ? '+' : '') + c.toFixed(4) + ' on p(' + prediction.label + '), ' +
                 (c > 0 ? 'supports' : (c < 0 ? 'argues against' : 'does not move')) + ' the label';
    mark.textContent = chars.slice(start, end).join('');
    shown.appendChild(mark);
    at = end;
  }
  shown.appendChild(document.createTextNode(chars.slice(at).join('')));
  box.appendChild(shown);
  if (items.length) {
    const legend = document.createElement('p');
    legend.className = 'explain-legend';
    legend.innerHTML = '<span style="background:rgba(46,125,50,.8)"></span>supports the label' +
                       '<span style="background:rgba(198,40,40,.8)"></span>argues against it' +
                       ' &middot; stronger colour: larger change in probability when the word is removed';
    box.appendChild(legend);
    const list = document.createElement('ol');
    list.id = 'explanation-list';
    for (const item of items) {
      const entry = document.createElement('li');
      entry.textContent = item.word + ' ' + (item.contribution >= 0 ? '+' : '') + item.contribution.toFixed(4);
      list.appendChild(entry);
    }
    box.appendChild(list);
  }
  out.appendChild(box);
}
"""
