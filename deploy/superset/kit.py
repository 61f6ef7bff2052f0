"""Python parts of the Superset starter kit (deploy/superset/check.sh runs them in the Superset venv).

  kit.py bundle OUT.zip [SQLALCHEMY_URI]   zip deploy/superset/helpdesk_overview/ into an importable
                                            bundle; with a URI, it replaces the database placeholder
  kit.py contract                          every dataset column is in tests/fixtures/reporting_contract.txt
                                            with its type, and every chart names a dataset of the bundle
  kit.py import BASE_URL ZIP DB_PASSWORD     import a bundle through the REST API, as Superset's
                                            "Import dashboard" dialog does (the password of the
                                            masked database URI given separately)
  kit.py reader-role ADMIN_URL ROLE PASSWORD  (re)create a login role IN ROLE helpdesk_sync_reader
  kit.py browser BASE_URL READER_URL OUT_DIR  log in with headless Chromium, check every chart of
                                            "Helpdesk overview" renders, then the author_id filter

Every failure raises SystemExit with a one-line reason.
"""

import io
import json
import os
import sys
import time
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
BUNDLE_DIR = os.path.join(HERE, "helpdesk_overview")
DASHBOARD_SLUG = "helpdesk-overview"
ADMIN_USER = "admin"
ADMIN_PASSWORD = os.environ.get("SUPERSET_ADMIN_PASSWORD", "admin")
TWO_53 = 2**53


def fail(msg):
    raise SystemExit(f"superset check FAILED: {msg}")


def log(msg):
    print(f"  {msg}", flush=True)


# --- bundle -------------------------------------------------------------------------------------


def bundle(out, uri=None):
    """Zip the YAML sources under one root folder (Superset strips the first path component)."""
    import yaml

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for dirpath, _, files in sorted(os.walk(BUNDLE_DIR)):
            for name in sorted(files):
                if not name.endswith(".yaml"):
                    continue
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, os.path.dirname(BUNDLE_DIR))
                text = open(path, encoding="utf-8").read()
                if uri and rel.startswith("helpdesk_overview/databases/"):
                    doc = yaml.safe_load(text)
                    doc["sqlalchemy_uri"] = uri
                    text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
                yaml.safe_load(text)  # a broken YAML file fails here, not deep inside the import
                z.writestr(rel, text)
    with open(out, "wb") as f:
        f.write(buf.getvalue())


def api_import(base, zip_path, db_password):
    import requests

    s = requests.Session()
    r = s.post(
        f"{base}/api/v1/security/login",
        json={"username": ADMIN_USER, "password": ADMIN_PASSWORD, "provider": "db"},
        timeout=60,
    )
    if r.status_code != 200:
        fail(f"API login as {ADMIN_USER}: HTTP {r.status_code} {r.text[:200]}")
    s.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
    r = s.get(f"{base}/api/v1/security/csrf_token/", timeout=60)
    s.headers.update({"X-CSRFToken": r.json()["result"], "Referer": base})
    with open(zip_path, "rb") as f:
        r = s.post(
            f"{base}/api/v1/dashboard/import/",
            files={"formData": (os.path.basename(zip_path), f, "application/zip")},
            data={
                "passwords": json.dumps({"databases/helpdesk_sync.yaml": db_password}),
                "overwrite": "true",
            },
            timeout=300,
        )
    if r.status_code != 200:
        fail(f"POST /api/v1/dashboard/import/: HTTP {r.status_code} {r.text[:500]}")
    r = s.get(f"{base}/api/v1/dashboard/{DASHBOARD_SLUG}/charts", timeout=60)
    if r.status_code != 200:
        fail(f"dashboard {DASHBOARD_SLUG} not found after import: HTTP {r.status_code}")
    charts = r.json()["result"]
    r = s.get(f"{base}/api/v1/database/", timeout=60)
    dbs = {d["database_name"]: d["id"] for d in r.json()["result"]}
    r = s.get(f"{base}/api/v1/database/{dbs['helpdesk_sync']}/connection", timeout=60)
    uri = r.json()["result"]["sqlalchemy_uri"]
    log(f"imported: dashboard {DASHBOARD_SLUG} with {len(charts)} charts; database helpdesk_sync = {uri}")


def contract():
    """The bundle against the reporting schema's contract: a dataset column that is not in the
    contract (a typo, a renamed column) fails here, before anything is installed or started;
    contract columns the datasets do not list yet are only reported."""
    import yaml

    want = {}
    path = os.path.join(HERE, "..", "..", "tests", "fixtures", "reporting_contract.txt")
    for line in open(path, encoding="utf-8"):
        line = line.strip()
        if line and not line.startswith("#"):
            name, typ = line.split(" ", 1)
            view, col = name.split(".")
            want.setdefault(view, {})[col] = typ.upper()
    datasets = {}
    problems = []
    ds_dir = os.path.join(BUNDLE_DIR, "datasets", "helpdesk_sync")
    for name in sorted(os.listdir(ds_dir)):
        ds = yaml.safe_load(open(os.path.join(ds_dir, name), encoding="utf-8"))
        view = ds["table_name"]
        datasets[ds["uuid"]] = ds
        if ds.get("schema") != "reporting" or view not in want:
            problems.append(f"{name}: reporting.{view} is not in the contract")
            continue
        cols = {c["column_name"]: c["type"] for c in ds["columns"]}
        for col, typ in cols.items():
            if want[view].get(col) != typ:
                problems.append(f"{name}: column {col} {typ}, contract: {want[view].get(col)}")
        if ds["main_dttm_col"] not in cols:
            problems.append(f"{name}: main_dttm_col {ds['main_dttm_col']} is not a column")
        for col in want[view]:
            if col not in cols:
                log(f"note: reporting.{view}.{col} is in the contract, not in {name}")
    for name in sorted(os.listdir(os.path.join(BUNDLE_DIR, "charts"))):
        ch = yaml.safe_load(open(os.path.join(BUNDLE_DIR, "charts", name), encoding="utf-8"))
        if ch["dataset_uuid"] not in datasets:
            problems.append(f"charts/{name}: dataset {ch['dataset_uuid']} is not in the bundle")
    if problems:
        fail("the bundle does not match the reporting contract: " + "; ".join(problems))
    log(f"bundle: {len(datasets)} datasets match tests/fixtures/reporting_contract.txt")


# --- database -----------------------------------------------------------------------------------


def reader_role(admin_url, role, password):
    import psycopg2
    from psycopg2 import sql

    con = psycopg2.connect(admin_url)
    con.autocommit = True
    cur = con.cursor()
    cur.execute("SELECT 1 FROM pg_roles WHERE rolname = 'helpdesk_sync_reader'")
    if cur.fetchone() is None:
        fail("role helpdesk_sync_reader does not exist (helpdesk-sync migrate creates it)")
    cur.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
    cur.execute(
        sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE helpdesk_sync_reader").format(
            sql.Identifier(role), sql.Literal(password)
        )
    )
    con.close()


def expected_author(reader_url):
    """An author id above 2^53 that has notes and whose neighbour id + 1 has notes too,
    with its note count, both read as the reader role."""
    import psycopg2

    con = psycopg2.connect(reader_url)
    cur = con.cursor()
    cur.execute("SELECT current_user, pg_has_role(current_user, 'helpdesk_sync_reader', 'member')")
    user, member = cur.fetchone()
    if not member:
        fail(f"the check connects as {user}, which is not in helpdesk_sync_reader")
    cur.execute(
        """
        SELECT n.author_id, count(*)
        FROM reporting.notes n
        WHERE n.author_id::numeric > %s
          AND EXISTS (SELECT 1 FROM reporting.notes m
                      WHERE m.author_id = (n.author_id::numeric + 1)::text)
        GROUP BY n.author_id
        ORDER BY count(*) DESC, n.author_id
        LIMIT 1
        """,
        (TWO_53,),
    )
    row = cur.fetchone()
    if row is None:
        fail("no note author id above 2^53 whose neighbour id + 1 also has notes (demo data?)")
    cur.execute("SELECT DISTINCT author_id FROM reporting.notes ORDER BY 1")
    all_authors = [r[0] for r in cur.fetchall()]
    cur.execute("SELECT count(*) FROM reporting.notes")
    (total,) = cur.fetchone()
    con.close()
    return row[0], row[1], all_authors, total


# --- browser ------------------------------------------------------------------------------------

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1600,2600",
    # the Superset page embeds a telemetry pixel (scarf.sh); resolve it nowhere
    "--host-resolver-rules=MAP *.scarf.sh ~NOTFOUND",
]

# The per-chart state, read in the page: each chart holder of the dashboard grid, its title,
# whether it still shows a spinner, its error text, and whether something was drawn.
CHART_STATE_JS = r"""
return Array.from(document.querySelectorAll('.dashboard-component-chart-holder')).map(h => {
  const title = (h.querySelector('[data-test="editable-title"], .header-title, .editable-title')
                 || {}).textContent || '';
  const loading = h.querySelector('.loading') !== null;
  const alerts = Array.from(h.querySelectorAll('[role="alert"], .alert-danger, [data-test="error-message"]'))
                 .map(a => a.textContent.trim()).filter(t => t.length > 0);
  const drawn = h.querySelector('canvas, svg.echarts, table tbody tr, .header-line, .big_number_total, [data-test="big-number"]') !== null;
  const rows = h.querySelectorAll('table tbody tr').length;
  const text = h.innerText.slice(0, 300);
  return {title: title.trim(), loading, alerts, drawn, rows, text};
});
"""


def chrome(out_dir):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")
    for flag in CHROMIUM_FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={os.path.join(out_dir, 'chromium-profile')}")
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    service = Service(executable_path=os.environ.get("CHROMEDRIVER_BIN", "/usr/bin/chromedriver"))
    return webdriver.Chrome(service=service, options=opts)


def chart_data_responses(driver):
    """Status codes of /api/v1/chart/data answers seen since the last call (performance log)."""
    seen = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") != "Network.responseReceived":
            continue
        resp = msg["params"]["response"]
        if "/api/v1/chart/data" in resp.get("url", ""):
            seen.append(resp.get("status"))
    return seen


def wait_for(what, fn, timeout):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.5)
    return None


def wait_charts(driver, expected, timeout, shot):
    def settled():
        states = driver.execute_script(CHART_STATE_JS)
        if len(states) < expected:
            return None
        if any(s["loading"] for s in states):
            return None
        if all(s["drawn"] or s["alerts"] for s in states):
            return states
        return None

    states = wait_for("charts", settled, timeout)
    driver.save_screenshot(shot)
    if states is None:
        states = driver.execute_script(CHART_STATE_JS)
        pending = [s["title"] or s["text"][:60] for s in states if s["loading"] or not s["drawn"]]
        fail(
            f"after {timeout}s, {len(states)} of {expected} charts on the page, not rendered: "
            f"{pending} (screenshot {shot})"
        )
    broken = [(s["title"], s["alerts"]) for s in states if s["alerts"] or not s["drawn"]]
    if broken:
        fail(f"charts with an error: {broken} (screenshot {shot})")
    return states


def browser(base, reader_url, out_dir):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    author, author_notes, all_authors, total_notes = expected_author(reader_url)
    log(
        f"reader sees {total_notes} notes by {len(all_authors)} authors; filter on author_id "
        f"{author} ({author_notes} notes; {int(author) + 1} has notes too; 2^53 = {TWO_53})"
    )
    expected_charts = 0
    for name in os.listdir(os.path.join(BUNDLE_DIR, "charts")):
        expected_charts += name.endswith(".yaml")

    driver = chrome(out_dir)
    driver.set_page_load_timeout(120)
    try:
        # 1. log in through the form
        driver.get(f"{base}/login/")
        user = wait_for(
            "login form",
            lambda: driver.find_elements(By.CSS_SELECTOR, '[data-test="username-input"]'),
            60,
        )
        if not user:
            driver.save_screenshot(os.path.join(out_dir, "0-login.png"))
            fail("no login form at /login/ (screenshot 0-login.png)")
        user[0].send_keys(ADMIN_USER)
        pw = driver.find_element(By.CSS_SELECTOR, '[data-test="password-input"]')
        pw.send_keys(ADMIN_PASSWORD)
        pw.send_keys(Keys.ENTER)
        if not wait_for("login", lambda: "/login" not in driver.current_url, 60):
            driver.save_screenshot(os.path.join(out_dir, "0-login.png"))
            fail("login as admin did not leave /login/ (screenshot 0-login.png)")
        log("logged in")

        # 2. the dashboard: every chart renders, no error, every chart/data answer is 200
        chart_data_responses(driver)
        t0 = time.time()
        driver.get(f"{base}/superset/dashboard/{DASHBOARD_SLUG}/")
        shot = os.path.join(out_dir, "1-dashboard.png")
        states = wait_charts(driver, expected_charts, 180, shot)
        statuses = chart_data_responses(driver)
        bad = [s for s in statuses if s != 200]
        if bad or len(statuses) < expected_charts:
            fail(
                f"/api/v1/chart/data answered {statuses} for {expected_charts} charts "
                f"(screenshot {shot})"
            )
        for s in states:
            log(f"rendered: {s['title']!r}")
        log(
            f"{len(states)} charts rendered in {time.time() - t0:.1f}s, {len(statuses)} chart/data "
            f"answers all 200; screenshot {shot}"
        )
        table = [s for s in states if s["rows"] > 0]
        if len(table) != 1:
            fail(f"expected one table chart with rows, found {len(table)}")
        if table[0]["rows"] != total_notes:
            fail(f"the notes table shows {table[0]['rows']} rows unfiltered, SQL says {total_notes}")

        # 3. the native filter on author_id: its options are the exact ids, then filter on one
        filter_select = wait_for(
            "filter select",
            lambda: driver.find_elements(
                By.CSS_SELECTOR, '[data-test="filter-bar"] .ant-select-selector'
            ),
            60,
        )
        if not filter_select:
            driver.save_screenshot(os.path.join(out_dir, "2-filter.png"))
            fail("no author_id select in the filter bar (screenshot 2-filter.png)")
        filter_select[0].click()

        def options():
            els = driver.find_elements(By.CSS_SELECTOR, ".ant-select-item-option")
            texts = sorted({(e.get_attribute("title") or e.text).strip() for e in els})
            return texts if len(texts) >= len(all_authors) else None

        opts = wait_for("filter options", options, 60)
        driver.save_screenshot(os.path.join(out_dir, "2-filter-options.png"))
        if opts != sorted(all_authors):
            fail(
                f"the author_id filter offers {opts}, the database has {all_authors} "
                "(ids rounded by the browser?) (screenshot 2-filter-options.png)"
            )
        log(f"filter offers the exact ids: {opts}")
        option = [
            e
            for e in driver.find_elements(By.CSS_SELECTOR, ".ant-select-item-option")
            if (e.get_attribute("title") or e.text).strip() == author
        ]
        option[0].click()
        driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
        apply = driver.find_element(By.CSS_SELECTOR, '[data-test="filter-bar__apply-button"]')
        chart_data_responses(driver)
        apply.click()

        def filtered():
            st = driver.execute_script(CHART_STATE_JS)
            rows = [s for s in st if s["rows"] > 0 and not s["loading"]]
            if rows and rows[0]["rows"] != total_notes:
                return rows[0]
            return None

        got = wait_for("filtered table", filtered, 60)
        shot = os.path.join(out_dir, "3-filtered.png")
        time.sleep(1)
        driver.save_screenshot(shot)
        if got is None:
            now = [s["rows"] for s in driver.execute_script(CHART_STATE_JS) if s["rows"] > 0]
            fail(
                f"after filtering on author_id {author} the notes table shows "
                f"{now[0] if now else 'no'} rows, SQL as the reader says {author_notes} "
                f"(screenshot {shot})"
            )
        cells = driver.execute_script(
            r"""
            const t = Array.from(document.querySelectorAll('.dashboard-component-chart-holder'))
                      .find(h => h.querySelectorAll('table tbody tr').length > 0);
            const head = Array.from(t.querySelectorAll('table thead th')).map(th => th.innerText.trim());
            const col = head.findIndex(h => h.startsWith('author_id'));
            return {head, col, values: Array.from(t.querySelectorAll('table tbody tr'))
                    .map(tr => (tr.children[col] || {}).innerText)};
            """
        )
        values = cells["values"]
        if len(values) != author_notes or set(values) != {author}:
            fail(
                f"filter on author_id {author}: the table shows {len(values)} rows with author ids "
                f"{sorted(set(values))}, SQL as the reader says {author_notes} rows "
                f"(screenshot {shot})"
            )
        log(
            f"filter on author_id {author}: the table shows exactly its {len(values)} rows "
            f"(SQL as the reader: {author_notes}); screenshot {shot}"
        )
    finally:
        for entry in driver.get_log("browser"):
            if entry.get("level") == "SEVERE" and "scarf.sh" not in entry.get("message", ""):
                print(f"  browser console: {entry.get('message', '')[:300]}", flush=True)
        driver.quit()


def main(argv):
    if len(argv) >= 2 and argv[0] == "bundle":
        bundle(argv[1], argv[2] if len(argv) > 2 else None)
    elif argv == ["contract"]:
        contract()
    elif len(argv) == 4 and argv[0] == "import":
        api_import(*argv[1:])
    elif len(argv) == 4 and argv[0] == "reader-role":
        reader_role(*argv[1:])
    elif len(argv) == 4 and argv[0] == "browser":
        browser(*argv[1:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
