// Sortable tables: click a header to sort by its column (data-v holds a cell's number; missing values last).
document.querySelectorAll('table.sortable').forEach(table => {
  const heads = [...table.tHead.rows[0].cells];
  heads.forEach((th, col) => th.addEventListener('click', () => {
    const body = table.tBodies[0];
    const asc = th.getAttribute('aria-sort') !== 'ascending';
    heads.forEach(h => h.removeAttribute('aria-sort'));
    th.setAttribute('aria-sort', asc ? 'ascending' : 'descending');
    const key = tr => { const c = tr.children[col];
      const raw = c.dataset.v !== undefined ? c.dataset.v : c.textContent.trim();
      const v = raw === '' ? NaN : Number(raw);
      return {num: !isNaN(v), v: isNaN(v) ? c.textContent.trim() : v, missing: raw === '' || raw === '—'}; };
    const cmp = (a, b) => {
      if (a.missing || b.missing) return a.missing - b.missing;   // missing values always last
      if (a.num && b.num) return a.v - b.v;
      return String(a.v).localeCompare(String(b.v));
    };
    [...body.rows].map((r, i) => [r, key(r), i])
      .sort((x, y) => { const m = x[1].missing || y[1].missing; const c = cmp(x[1], y[1]);
                        return (m ? c : c * (asc ? 1 : -1)) || x[2] - y[2]; })
      .forEach(([r]) => body.appendChild(r));
  }));
});
