// The infergate console. Every action is a call of the public management API with the
// signed-in user's token, kept in session storage: the page has no powers of its own, and
// a user sees and can do what the API allows their role. Text from the API is only ever
// set as text (never parsed as HTML).

const store = window.sessionStorage;
const KEY = 'infergate.session';
let session = JSON.parse(store.getItem(KEY) || 'null');

const $ = (selector) => document.querySelector(selector);

class ApiError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

/** The JSON of a reply; an ApiError with the API's error code and message when it failed. */
async function read(reply) {
  const text = await reply.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!reply.ok) {
    const code = data?.error_code ?? data?.error?.code ?? reply.status;
    const message = data?.error_msg ?? data?.error?.message ?? (text || reply.statusText);
    throw new ApiError(String(code), message);
  }
  return data;
}

/** A call of the management API with the session's token. */
async function api(method, path, body) {
  const headers = { 'X-Auth-Token': session.token };
  const init = { method, headers };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  return read(await fetch(path, init));
}

/** A path of the session's project. */
const inProject = (rest) => `/v1/${encodeURIComponent(session.project_id)}${rest}`;
const id = (value) => encodeURIComponent(value);

/** An element with attributes (`on…` are listeners, `text` its text) and children. */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else if (name === 'text') node.textContent = value;
    else node.setAttribute(name, value === true ? '' : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

const field = (text, input) => el('label', {}, text, input);

function showError(error) {
  const box = $('#error');
  if (!error) {
    box.hidden = true;
    box.textContent = '';
    return;
  }
  box.hidden = false;
  box.textContent =
    error instanceof ApiError ? `${error.code}: ${error.message}` : String(error.message || error);
}

/** Runs `work`, showing its failure (the API's error code and message). */
async function guarded(work) {
  showError(null);
  try {
    await work();
  } catch (error) {
    showError(error);
  }
}

/** Shows `nodes` (those that are `false`, `null` or `undefined` left out) as the view. */
function render(...nodes) {
  $('#main').replaceChildren(...nodes.filter((node) => node !== false && node != null));
  const heading = $('#main h2');
  if (heading) {
    heading.tabIndex = -1;
    heading.focus();
  }
}

/** Whether the session's role may change things (the API still decides each call). */
const writer = () => session.roles.includes('admin') || session.roles.includes('member');

function copyButton(label, value) {
  return el('button', {
    type: 'button',
    class: 'secondary',
    'aria-label': label,
    onclick: () => navigator.clipboard.writeText(value),
  }, 'Copy');
}

function form(label, fields, submit, onsubmit) {
  return el('form', {
    'aria-label': label,
    onsubmit: (event) => {
      event.preventDefault();
      guarded(onsubmit);
    },
  }, fields, el('button', { type: 'submit' }, submit));
}

// ---------------------------------------------------------------- sign-in and out

function signIn() {
  $('#nav').hidden = true;
  const user = el('input', { name: 'user', autocomplete: 'username', required: true });
  const password = el('input', {
    name: 'password', type: 'password', autocomplete: 'current-password', required: true,
  });
  const project = el('input', { name: 'project', value: 'default', required: true });
  const domain = el('input', { name: 'domain', value: 'default', required: true });
  render(
    el('h2', {}, 'Sign in'),
    form('Sign in', [
      field('User', user), field('Password', password), field('Project', project),
      field('Domain', domain),
    ], 'Sign in', async () => {
      const reply = await fetch('/v3/auth/tokens', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({
          auth: {
            identity: {
              methods: ['password'],
              password: {
                user: { name: user.value, password: password.value, domain: { name: domain.value } },
              },
            },
            scope: { project: { name: project.value } },
          },
        }),
      });
      const body = await read(reply);
      password.value = '';
      session = {
        token: reply.headers.get('X-Subject-Token'),
        project_id: body.token.project.id,
        project: body.token.project.name,
        user: body.token.user.name,
        user_id: body.token.user.id,
        roles: (body.token.roles || []).map((role) => role.name),
      };
      store.setItem(KEY, JSON.stringify(session));
      start();
    }),
  );
}

async function signOut() {
  await guarded(async () => {
    // The token is revoked: it opens nothing any more, here or elsewhere.
    const reply = await fetch('/v3/auth/tokens', {
      method: 'DELETE',
      headers: { 'X-Auth-Token': session.token, 'X-Subject-Token': session.token },
    });
    if (!reply.ok && reply.status !== 401 && reply.status !== 404) await read(reply);
  });
  store.removeItem(KEY);
  session = null;
  signIn();
}

// ---------------------------------------------------------------- services and their APIs

async function services() {
  const list = await api('GET', inProject('/services?limit=100'));
  const rows = list.services.map((service) => el('tr', {},
    el('td', {}, el('button', {
      type: 'button', class: 'secondary', onclick: () => guarded(() => serviceApis(service)),
    }, service.service_name)),
    el('td', {}, service.upstreams.join('\n')),
    el('td', {}, service.load_balancing),
    el('td', {}, writer() && el('button', {
      type: 'button',
      class: 'danger',
      'aria-label': `Delete service ${service.service_name}`,
      onclick: () => guarded(async () => {
        if (!window.confirm(`Delete ${service.service_name} and its APIs?`)) return;
        await api('DELETE', inProject(`/services/${id(service.service_id)}`));
        await services();
      }),
    }, 'Delete'))));
  const name = el('input', { name: 'service_name', required: true, pattern: '[A-Za-z][A-Za-z0-9_\\-]{0,63}' });
  const upstreams = el('textarea', { name: 'upstreams', rows: 2, cols: 40, required: true,
    placeholder: 'http://model-a:8000/v1' });
  render(
    el('h2', {}, 'Services'),
    writer() && form('Create a service', [
      field('Name', name), field('Upstream URLs, one per line', upstreams),
    ], 'Create service', async () => {
      await api('POST', inProject('/services'), {
        service_name: name.value,
        upstreams: upstreams.value.split('\n').map((u) => u.trim()).filter(Boolean),
      });
      await services();
    }),
    el('table', { 'aria-label': 'Services' },
      el('thead', {}, el('tr', {}, ['Name', 'Upstreams', 'Balancing', ''].map((h) => el('th', {}, h)))),
      el('tbody', {}, rows)),
    list.services.length === 0 && el('p', { class: 'muted' }, 'No service yet.'),
  );
}

async function serviceApis(service, saved = false) {
  const sid = id(service.service_id);
  const [list, apps] = await Promise.all([
    api('GET', inProject(`/services/${sid}/app-auth-apis`)),
    api('GET', inProject('/app-auth/apps?limit=100')),
  ]);
  const authorized = await Promise.all(list.apis.map((a) =>
    api('GET', inProject(`/services/${sid}/app-auth-apis/${id(a.api_id)}/api-auths?limit=100`))
      .then((r) => r.auths.filter((x) => x.authed).map((x) => x.app))));
  const rows = list.apis.map((a, i) => {
    const choice = el('select', { 'aria-label': `App to authorize on ${a.api_name}` },
      apps.apps.map((app) => el('option', { value: app.app_id }, app.app_name)));
    return el('tr', {},
      el('td', {}, a.api_name),
      el('td', {}, a.auth_type, a.support_app_code ? ' + AppCode' : ''),
      el('td', {}, el('code', {}, a.predict_url), ' ', copyButton(`Copy the predict URL of ${a.api_name}`, a.predict_url)),
      el('td', {}, authorized[i].map((app) => el('div', {}, app.app_name,
        writer() && el('button', {
          type: 'button',
          class: 'secondary',
          'aria-label': `Unauthorize ${app.app_name} on ${a.api_name}`,
          onclick: () => guarded(async () => {
            await api('DELETE', inProject(`/services/${sid}/app-auth-apis/${id(a.api_id)}/app-auth-api`),
              { apps: [{ app_id: app.app_id }] });
            await serviceApis(service);
          }),
        }, 'Unauthorize')))),
      el('td', {}, writer() && el('div', { class: 'row-actions' },
        apps.apps.length > 0 && choice,
        apps.apps.length > 0 && el('button', {
          type: 'button',
          'aria-label': `Authorize the chosen app on ${a.api_name}`,
          onclick: () => guarded(async () => {
            await api('POST', inProject(`/services/${sid}/app-auth-apis/${id(a.api_id)}/app-auth-api`),
              { apps: [{ app_id: choice.value }] });
            await serviceApis(service);
          }),
        }, 'Authorize'),
        el('button', {
          type: 'button',
          class: 'danger',
          'aria-label': `Delete API ${a.api_name}`,
          onclick: () => guarded(async () => {
            if (!window.confirm(`Delete ${a.api_name}?`)) return;
            await api('DELETE', inProject(`/services/${sid}/app-auth-apis/${id(a.api_id)}`));
            await serviceApis(service);
          }),
        }, 'Delete'))));
  });
  const settings = writer() && serviceSettings(service, saved);
  const authType = el('select', { name: 'auth_type' },
    ['APP', 'IAM', 'NONE'].map((t) => el('option', { value: t }, t)));
  const appCode = el('input', { type: 'checkbox', name: 'support_app_code' });
  render(
    el('h2', {}, `APIs of ${service.service_name}`),
    el('p', { class: 'muted' }, 'Upstreams: ', service.upstreams.join(', ')),
    settings,
    writer() && form('Create an API', [
      field('Auth type', authType), el('label', { class: 'inline' }, appCode, ' AppCode calls'),
    ], 'Create API', async () => {
      await api('POST', inProject(`/app-auth/${sid}/apis`), {
        auth_type: authType.value,
        support_app_code: appCode.checked,
      });
      await serviceApis(service);
    }),
    el('table', { 'aria-label': 'APIs' },
      el('thead', {}, el('tr', {}, ['API', 'Auth', 'Predict URL', 'Authorized apps', ''].map((h) => el('th', {}, h)))),
      el('tbody', {}, rows)),
    list.apis.length === 0 && el('p', { class: 'muted' }, 'No API yet.'),
  );
}

/** The form that edits a service's upstreams and settings (a PUT of what changed). */
function serviceSettings(service, saved) {
  const upstreams = el('textarea', { name: 'upstreams', rows: 2, cols: 40 });
  upstreams.value = service.upstreams.join('\n');
  const weights = el('input', { name: 'upstream_weights', value: service.upstream_weights.join(', '), size: 12 });
  const timeout = el('input', { name: 'timeout_ms', type: 'number', min: 1, value: service.timeout_ms });
  const balancing = el('select', { name: 'load_balancing' },
    ['least_outstanding', 'round_robin'].map((b) =>
      el('option', { value: b, selected: b === service.load_balancing }, b)));
  const accounting = el('input', { type: 'checkbox', name: 'usage_accounting', checked: service.usage_accounting });
  const ca = el('textarea', { name: 'tls_ca_pem', rows: 2, cols: 40, placeholder: '-----BEGIN CERTIFICATE-----' });
  ca.value = service.tls_ca_pem || '';
  const health = el('input', { name: 'health_path', value: service.health_check?.path || '', placeholder: '/health' });
  const retries = el('input', { name: 'retry_attempts', type: 'number', min: 0, value: service.retry?.attempts ?? 0 });
  // Drawn again after a save: open, saying so.
  return el('details', { open: saved },
    el('summary', {}, 'Settings'),
    saved && el('p', { role: 'status' }, 'Settings saved.'),
    form('Service settings', [
      field('Upstream URLs, one per line', upstreams),
      field('Weights', weights),
      field('Timeout (ms)', timeout),
      field('Balancing', balancing),
      el('label', { class: 'inline' }, accounting, ' Read token usage'),
      field('CA bundle (PEM) for https upstreams', ca),
      field('Health check path', health),
      field('Retry attempts', retries),
    ], 'Save settings', async () => {
      const list = upstreams.value.split('\n').map((u) => u.trim()).filter(Boolean);
      const body = {
        upstreams: list,
        timeout_ms: Number(timeout.value),
        load_balancing: balancing.value,
        usage_accounting: accounting.checked,
        tls_ca_pem: ca.value.trim(),
      };
      const w = weights.value.split(',').map((x) => x.trim()).filter(Boolean);
      if (w.length > 0) body.upstream_weights = w.map(Number);
      const path = health.value.trim();
      if (path !== (service.health_check?.path || '')) {
        body.health_check = path ? { ...(service.health_check || {}), path } : null;
      }
      const attempts = Number(retries.value);
      if (attempts !== (service.retry?.attempts ?? 0)) {
        body.retry = attempts > 0 ? { on: ['connect', '5xx'], ...(service.retry || {}), attempts } : null;
      }
      const updated = await api('PUT', inProject(`/services/${id(service.service_id)}`), body);
      await serviceApis(updated.service ?? updated, true);
    }));
}

// ---------------------------------------------------------------- apps

/** The key and secret of an app, shown once, with copy buttons and a warning. */
function secretPanel(app) {
  return el('div', { class: 'secret', role: 'status' },
    el('p', {}, el('strong', {}, 'Copy the AppSecret now: it is not shown again.')),
    el('p', {}, 'AppKey: ', el('code', { id: 'new-app-key' }, app.app_key), ' ',
      copyButton('Copy the AppKey', app.app_key)),
    el('p', {}, 'AppSecret: ', el('code', { id: 'new-app-secret' }, app.app_secret), ' ',
      copyButton('Copy the AppSecret', app.app_secret)));
}

async function apps(shown) {
  const list = await api('GET', inProject('/app-auth/apps?limit=100'));
  const rows = list.apps.map((app) => el('tr', {},
    el('td', {}, el('button', {
      type: 'button', class: 'secondary', onclick: () => guarded(() => appDetail(app.app_id)),
    }, app.app_name)),
    el('td', {}, el('code', {}, app.app_key)),
    el('td', {}, String(app.bounded_api_count)),
    el('td', {}, writer() && el('div', { class: 'row-actions' },
      el('button', {
        type: 'button',
        class: 'secondary',
        'aria-label': `Reset the secret of ${app.app_name}`,
        onclick: () => guarded(async () => {
          if (!window.confirm(`Reset the secret of ${app.app_name}? Callers using it stop working.`)) return;
          const reset = await api('PUT', inProject(`/app-auth/apps/${id(app.app_id)}/app-secret`), {});
          await apps(reset.app ?? reset);
        }),
      }, 'Reset secret'),
      el('button', {
        type: 'button',
        class: 'danger',
        'aria-label': `Delete app ${app.app_name}`,
        onclick: () => guarded(async () => {
          if (!window.confirm(`Delete ${app.app_name}?`)) return;
          await api('DELETE', inProject(`/app-auth/apps/${id(app.app_id)}`));
          await apps();
        }),
      }, 'Delete')))));
  const name = el('input', { name: 'app_name', required: true, pattern: '[A-Za-z][A-Za-z0-9_]{2,63}' });
  render(
    el('h2', {}, 'Apps'),
    shown && secretPanel(shown),
    writer() && form('Create an app', [field('Name', name)], 'Create app', async () => {
      const created = await api('POST', inProject('/app-auth/apps'), { app_name: name.value });
      await apps(created.app ?? created);
    }),
    el('table', { 'aria-label': 'Apps' },
      el('thead', {}, el('tr', {}, ['Name', 'AppKey', 'APIs', ''].map((h) => el('th', {}, h)))),
      el('tbody', {}, rows)),
    list.apps.length === 0 && el('p', { class: 'muted' }, 'No app yet.'),
  );
}

/** One app: its AppCodes (add, reset, delete) and the APIs it may call (from its side). */
async function appDetail(appId, fresh) {
  const path = inProject(`/app-auth/apps/${id(appId)}`);
  const [detail, bound, apis] = await Promise.all([
    api('GET', path),
    api('GET', `${path}/auth-apis?limit=100`),
    allApis(),
  ]);
  const app = detail.app ?? detail;
  const boundIds = new Set(bound.apis.map((a) => a.api_id));
  const open = apis.filter((a) => a.auth_type === 'APP' && !boundIds.has(a.api_id));
  const reload = () => appDetail(appId);
  const codes = (app.app_codes || []).map((code, i) => el('tr', {},
    el('td', {}, el('code', { class: code === fresh ? 'fresh' : null }, code), ' ',
      copyButton(`Copy AppCode ${i + 1}`, code)),
    el('td', {}, writer() && el('div', { class: 'row-actions' },
      el('button', {
        type: 'button',
        class: 'secondary',
        'aria-label': `Reset AppCode ${i + 1}`,
        onclick: () => guarded(async () => {
          if (!window.confirm('Reset this AppCode? Callers using it stop working.')) return;
          const after = await api('PUT', `${path}/app-code/${id(code)}`, {});
          const codesAfter = (after.app ?? after).app_codes || [];
          await appDetail(appId, codesAfter[i]);
        }),
      }, 'Reset'),
      el('button', {
        type: 'button',
        class: 'danger',
        'aria-label': `Delete AppCode ${i + 1}`,
        onclick: () => guarded(async () => {
          if (!window.confirm('Delete this AppCode? Callers using it stop working.')) return;
          await api('DELETE', `${path}/app-code/${id(code)}`);
          await reload();
        }),
      }, 'Delete')))));
  const apiRows = bound.apis.map((a) => el('tr', {},
    el('td', {}, a.service_name),
    el('td', {}, a.api_name),
    el('td', {}, el('code', {}, a.predict_url)),
    el('td', {}, writer() && el('button', {
      type: 'button',
      class: 'secondary',
      'aria-label': `Unauthorize ${app.app_name} on ${a.api_name}`,
      onclick: () => guarded(async () => {
        await api('DELETE', inProject(`/services/${id(a.service_id)}/app-auth-apis/${id(a.api_id)}/app-auth-api`),
          { apps: [{ app_id: appId }] });
        await reload();
      }),
    }, 'Unauthorize'))));
  const choice = el('select', { 'aria-label': `API to authorize ${app.app_name} on` },
    open.map((a) => el('option', { value: `${a.service_id}/${a.api_id}` }, `${a.service_name} · ${a.api_name}`)));
  render(
    el('h2', {}, `App ${app.app_name}`),
    el('p', {}, 'AppKey: ', el('code', {}, app.app_key), ' ', copyButton('Copy the AppKey', app.app_key)),
    el('h3', {}, 'AppCodes'),
    el('p', { class: 'muted' }, 'An AppCode alone authenticates calls to APIs that accept AppCode calls (header X-Apig-AppCode): keep it as secret as the AppSecret.'),
    writer() && el('button', {
      type: 'button',
      onclick: () => guarded(async () => {
        const before = new Set(app.app_codes || []);
        const after = await api('POST', `${path}/app-code`, {});
        const added = ((after.app ?? after).app_codes || []).find((c) => !before.has(c));
        await appDetail(appId, added);
      }),
    }, 'Add AppCode'),
    el('table', { 'aria-label': 'AppCodes' },
      el('thead', {}, el('tr', {}, ['AppCode', ''].map((h) => el('th', {}, h)))),
      el('tbody', {}, codes)),
    (app.app_codes || []).length === 0 && el('p', { class: 'muted' }, 'No AppCode.'),
    el('h3', {}, 'APIs it may call'),
    writer() && open.length > 0 && el('div', { class: 'row-actions' }, choice, el('button', {
      type: 'button',
      'aria-label': `Authorize ${app.app_name} on the chosen API`,
      onclick: () => guarded(async () => {
        const [sid, apiId] = choice.value.split('/');
        await api('POST', inProject(`/services/${id(sid)}/app-auth-apis/${id(apiId)}/app-auth-api`),
          { apps: [{ app_id: appId }] });
        await reload();
      }),
    }, 'Authorize')),
    el('table', { 'aria-label': 'Authorized APIs' },
      el('thead', {}, el('tr', {}, ['Service', 'API', 'Predict URL', ''].map((h) => el('th', {}, h)))),
      el('tbody', {}, apiRows)),
    bound.apis.length === 0 && el('p', { class: 'muted' }, 'Not authorized on any API.'),
  );
}

// ---------------------------------------------------------------- throttling

const throttlesPath = (rest = '') =>
  `/v2/${id(session.project_id)}/apigw/instances/default${rest}`;

/** Every API of the project, each with its service's name. */
async function allApis() {
  const serviceList = await api('GET', inProject('/services?limit=100'));
  const perService = await Promise.all(serviceList.services.map((service) =>
    api('GET', inProject(`/services/${id(service.service_id)}/app-auth-apis`))
      .then((r) => r.apis.map((a) => ({ ...a, service: service.service_name })))));
  return perService.flat();
}

/** Throttling policies: list, create, delete; a policy's page binds APIs and sets special limits. */
async function throttles() {
  const list = await api('GET', throttlesPath('/throttles?limit=100'));
  const every = (t) => `${t.time_interval} ${t.time_unit.toLowerCase()}${t.time_interval > 1 ? 's' : ''}`;
  const rows = list.throttles.map((t) => el('tr', {},
    el('td', {}, el('button', {
      type: 'button', class: 'secondary', onclick: () => guarded(() => throttle(t.id)),
    }, t.name)),
    el('td', {}, `${t.api_call_limits} per API`,
      t.app_call_limits ? `, ${t.app_call_limits} per app` : '',
      t.user_call_limits ? `, ${t.user_call_limits} per user` : '',
      t.ip_call_limits ? `, ${t.ip_call_limits} per IP` : ''),
    el('td', {}, every(t)),
    el('td', {}, t.unit === 'TOKEN' ? 'tokens' : 'calls'),
    el('td', {}, String(t.bind_num)),
    el('td', {}, writer() && el('button', {
      type: 'button',
      class: 'danger',
      'aria-label': `Delete policy ${t.name}`,
      onclick: () => guarded(async () => {
        if (!window.confirm(`Delete ${t.name}? Its APIs are no longer limited by it.`)) return;
        await api('DELETE', throttlesPath(`/throttles/${id(t.id)}`));
        await throttles();
      }),
    }, 'Delete'))));
  const name = el('input', { name: 'throttle_name', required: true, pattern: '[A-Za-z][A-Za-z0-9_]{2,63}' });
  const apiLimit = el('input', { name: 'api_call_limits', type: 'number', min: 1, required: true, value: 100 });
  const appLimit = el('input', { name: 'app_call_limits', type: 'number', min: 1 });
  const interval = el('input', { name: 'time_interval', type: 'number', min: 1, required: true, value: 1 });
  const unitOfTime = el('select', { name: 'time_unit', 'aria-label': 'Window unit' },
    ['SECOND', 'MINUTE', 'HOUR', 'DAY'].map((u) => el('option', { value: u, selected: u === 'MINUTE' }, u.toLowerCase())));
  const counts = el('select', { name: 'unit', 'aria-label': 'Counts' },
    el('option', { value: 'REQUEST' }, 'calls'), el('option', { value: 'TOKEN' }, 'tokens'));
  render(
    el('h2', {}, 'Throttling'),
    writer() && form('Create a policy', [
      field('Name', name), field('Limit per API', apiLimit), field('Limit per app', appLimit),
      field('Window', interval), field('Window unit', unitOfTime), field('Counts', counts),
    ], 'Create policy', async () => {
      const body = {
        name: name.value,
        api_call_limits: Number(apiLimit.value),
        time_interval: Number(interval.value),
        time_unit: unitOfTime.value,
        unit: counts.value,
      };
      if (appLimit.value) body.app_call_limits = Number(appLimit.value);
      await api('POST', throttlesPath('/throttles'), body);
      await throttles();
    }),
    el('table', { 'aria-label': 'Policies' },
      el('thead', {}, el('tr', {}, ['Policy', 'Limits', 'Window', 'Counts', 'APIs', ''].map((h) => el('th', {}, h)))),
      el('tbody', {}, rows)),
    list.throttles.length === 0 && el('p', { class: 'muted' }, 'No policy yet.'),
  );
}

/** One policy: the APIs bound to it and its special limits for apps. */
async function throttle(throttleId) {
  const [policy, bound, specials, apis, appList] = await Promise.all([
    api('GET', throttlesPath(`/throttles/${id(throttleId)}`)),
    api('GET', throttlesPath(`/throttle-bindings/binded-apis?throttle_id=${id(throttleId)}`)),
    api('GET', throttlesPath(`/throttles/${id(throttleId)}/throttle-specials`)),
    allApis(),
    api('GET', inProject('/app-auth/apps?limit=100')),
  ]);
  const reload = () => throttle(throttleId);
  const boundIds = new Set(bound.apis.map((a) => a.id));
  const free = apis.filter((a) => !boundIds.has(a.api_id));
  const boundRows = bound.apis.map((a) => el('tr', {},
    el('td', {}, a.name), el('td', {}, a.req_uri), el('td', {}, a.auth_type),
    el('td', {}, writer() && el('button', {
      type: 'button',
      class: 'secondary',
      'aria-label': `Unbind ${a.name}`,
      onclick: () => guarded(async () => {
        await api('DELETE', throttlesPath(`/throttle-bindings/${id(a.throttle_apply_id)}`));
        await reload();
      }),
    }, 'Unbind'))));
  const choice = el('select', { 'aria-label': 'API to bind' },
    free.map((a) => el('option', { value: a.api_id }, `${a.service} · ${a.api_name}`)));
  const appNames = new Map(appList.apps.map((a) => [a.app_id, a.app_name]));
  const named = (x) => x.object_name || appNames.get(x.object_id) || x.object_id;
  const specialRows = specials.throttle_specials.map((x) => el('tr', {},
    el('td', {}, named(x)), el('td', {}, x.object_type), el('td', {}, String(x.call_limits)),
    el('td', {}, writer() && el('button', {
      type: 'button',
      class: 'danger',
      'aria-label': `Delete the special limit of ${named(x)}`,
      onclick: () => guarded(async () => {
        await api('DELETE', throttlesPath(`/throttles/${id(throttleId)}/throttle-specials/${id(x.id)}`));
        await reload();
      }),
    }, 'Delete'))));
  const app = el('select', { 'aria-label': 'App of the special limit' },
    appList.apps.map((a) => el('option', { value: a.app_id }, a.app_name)));
  const limit = el('input', { name: 'call_limits', type: 'number', min: 1, required: true });
  render(
    el('h2', {}, `Policy ${policy.name}`),
    el('p', { class: 'muted' }, `${policy.api_call_limits} ${policy.unit === 'TOKEN' ? 'tokens' : 'calls'} per API every ${policy.time_interval} ${policy.time_unit.toLowerCase()}`,
      policy.app_call_limits ? `, ${policy.app_call_limits} per app` : ''),
    el('h3', {}, 'Bound APIs'),
    writer() && free.length > 0 && el('div', { class: 'row-actions' }, choice, el('button', {
      type: 'button',
      onclick: () => guarded(async () => {
        await api('POST', throttlesPath('/throttle-bindings'), { policy_id: throttleId, publish_ids: [choice.value] });
        await reload();
      }),
    }, 'Bind')),
    el('table', { 'aria-label': 'Bound APIs' },
      el('thead', {}, el('tr', {}, ['API', 'Path', 'Auth', ''].map((h) => el('th', {}, h)))),
      el('tbody', {}, boundRows)),
    bound.apis.length === 0 && el('p', { class: 'muted' }, 'No API bound.'),
    el('h3', {}, 'Special limits'),
    writer() && appList.apps.length > 0 && form('Add a special limit', [field('App', app), field('Limit', limit)],
      'Add special limit', async () => {
        await api('POST', throttlesPath(`/throttles/${id(throttleId)}/throttle-specials`),
          { object_type: 'APP', object_id: app.value, call_limits: Number(limit.value) });
        await reload();
      }),
    el('table', { 'aria-label': 'Special limits' },
      el('thead', {}, el('tr', {}, ['For', 'Kind', 'Limit', ''].map((h) => el('th', {}, h)))),
      el('tbody', {}, specialRows)),
    specials.throttle_specials.length === 0 && el('p', { class: 'muted' }, 'No special limit.'),
  );
}

// ---------------------------------------------------------------- users and access keys

const ROLES = ['admin', 'member', 'viewer'];

/** An access key's secret, shown once. */
function keyPanel(credential) {
  return el('div', { class: 'secret', role: 'status' },
    el('p', {}, el('strong', {}, 'Copy the secret access key now: it is not shown again.')),
    el('p', {}, 'Access key: ', el('code', { id: 'new-access-key' }, credential.access), ' ',
      copyButton('Copy the access key', credential.access)),
    el('p', {}, 'Secret: ', el('code', { id: 'new-access-secret' }, credential.secret), ' ',
      copyButton('Copy the secret access key', credential.secret)));
}

/** The access keys (AK/SK) of one user: create (the secret shown once), disable, delete. */
async function accessKeys(user, shown) {
  const list = await api('GET', `/v3.0/OS-CREDENTIAL/credentials?user_id=${id(user.id)}`);
  const again = (created) => users(user, created);
  const rows = list.credentials.map((c) => el('tr', {},
    el('td', {}, el('code', {}, c.access)),
    el('td', {}, c.status),
    el('td', {}, c.description || ''),
    el('td', {}, el('div', { class: 'row-actions' },
      el('button', {
        type: 'button',
        class: 'secondary',
        'aria-label': `${c.status === 'active' ? 'Disable' : 'Enable'} access key ${c.access}`,
        onclick: () => guarded(async () => {
          await api('PUT', `/v3.0/OS-CREDENTIAL/credentials/${id(c.access)}`,
            { credential: { status: c.status === 'active' ? 'inactive' : 'active' } });
          await again();
        }),
      }, c.status === 'active' ? 'Disable' : 'Enable'),
      el('button', {
        type: 'button',
        class: 'danger',
        'aria-label': `Delete access key ${c.access}`,
        onclick: () => guarded(async () => {
          if (!window.confirm(`Delete the access key ${c.access}? Calls signed with it stop working.`)) return;
          await api('DELETE', `/v3.0/OS-CREDENTIAL/credentials/${id(c.access)}`);
          await again();
        }),
      }, 'Delete')))));
  const description = el('input', { name: 'description', size: 30 });
  return el('section', { 'aria-label': `Access keys of ${user.name}` },
    el('h3', {}, `Access keys of ${user.name}`),
    shown && keyPanel(shown),
    form('Create an access key', [field('Description', description)], 'Create access key', async () => {
      const created = await api('POST', '/v3.0/OS-CREDENTIAL/credentials',
        { credential: { user_id: user.id, description: description.value } });
      await again(created.credential);
    }),
    el('table', { 'aria-label': 'Access keys' },
      el('thead', {}, el('tr', {}, ['Access key', 'Status', 'Description', ''].map((h) => el('th', {}, h)))),
      el('tbody', {}, rows)),
    list.credentials.length === 0 && el('p', { class: 'muted' }, 'No access key.'));
}

/**
 * Users of the domain and their roles in this project (for domain admins), and the access
 * keys of the chosen user (anyone: their own).
 */
/** The project whose role grants the users page shows (the session's unless chosen). */
let rolesProject = null;

/** Projects: a table of those the user sees, and for a domain admin a form that creates one. */
function projectsPanel(list, admin, chosen) {
  const name = el('input', { name: 'project_name', required: true, autocomplete: 'off' });
  const description = el('input', { name: 'project_description', autocomplete: 'off' });
  return el('section', { 'aria-label': 'Projects' },
    el('h3', {}, admin ? 'Projects' : 'Your projects'),
    admin && form('Create a project', [field('Project name', name), field('Project description', description)],
      'Create project', async () => {
        const made = await api('POST', '/v3/projects', { project: { name: name.value, description: description.value } });
        rolesProject = made.project;
        await users(chosen);
      }),
    el('table', { 'aria-label': 'Projects' },
      el('thead', {}, el('tr', {}, ['Project', 'ID', 'Description'].map((h) => el('th', {}, h)))),
      el('tbody', {}, list.map((p) => el('tr', {},
        el('td', {}, p.name, p.id === session.project_id ? ' (signed in)' : ''),
        el('td', {}, el('code', {}, p.id)), el('td', {}, p.description || ''))))),
  );
}

async function users(chosen, shownKey) {
  let list = null;
  try {
    list = await api('GET', '/v3/users');
  } catch (error) {
    if (!(error instanceof ApiError) || error.code !== '403') throw error;
  }
  const projects = (await api('GET', '/v3/projects')).projects;
  const me = { id: session.user_id, name: session.user };
  if (!list) {
    // Not a domain admin: one's own projects and access keys alone.
    render(el('h2', {}, 'Users'),
      el('p', { class: 'muted' }, 'Only domain administrators manage users and projects; these are your projects and your own access keys.'),
      projectsPanel(projects, false, chosen),
      await accessKeys(me, shownKey));
    return;
  }
  const shownProject = projects.find((p) => p.id === rolesProject?.id)
    ?? { id: session.project_id, name: session.project };
  const project = id(shownProject.id);
  const projectChoice = el('select', {
    'aria-label': 'Project of the roles',
    onchange: (event) => guarded(async () => {
      rolesProject = projects.find((p) => p.id === event.target.value);
      await users(chosen);
    }),
  }, projects.map((p) => el('option', { value: p.id, selected: p.id === shownProject.id }, p.name)));
  const roles = await Promise.all(list.users.map((u) =>
    api('GET', `/v3/projects/${project}/users/${id(u.id)}/roles`).then((r) => r.roles.map((x) => x.name))));
  const rows = list.users.map((u, i) => {
    const grant = el('select', { 'aria-label': `Role to grant ${u.name}` },
      ROLES.filter((r) => !roles[i].includes(r)).map((r) => el('option', { value: r }, r)));
    return el('tr', {},
      el('td', {}, el('button', {
        type: 'button', class: 'secondary', onclick: () => guarded(() => users(u)),
      }, u.name)),
      el('td', {}, u.enabled ? 'enabled' : 'disabled'),
      el('td', {}, roles[i].map((r) => el('div', {}, r, ' ', el('button', {
        type: 'button',
        class: 'secondary',
        'aria-label': `Revoke ${r} from ${u.name}`,
        onclick: () => guarded(async () => {
          await api('DELETE', `/v3/projects/${project}/users/${id(u.id)}/roles/${id(r)}`);
          await users(chosen);
        }),
      }, 'Revoke')))),
      el('td', {}, el('div', { class: 'row-actions' },
        grant.options.length > 0 && grant,
        grant.options.length > 0 && el('button', {
          type: 'button',
          'aria-label': `Grant the chosen role to ${u.name}`,
          onclick: () => guarded(async () => {
            await api('PUT', `/v3/projects/${project}/users/${id(u.id)}/roles/${id(grant.value)}`);
            await users(chosen);
          }),
        }, 'Grant'),
        u.id !== session.user_id && el('button', {
          type: 'button',
          class: 'danger',
          'aria-label': `Delete user ${u.name}`,
          onclick: () => guarded(async () => {
            if (!window.confirm(`Delete the user ${u.name}?`)) return;
            await api('DELETE', `/v3/users/${id(u.id)}`);
            await users();
          }),
        }, 'Delete'))));
  });
  const name = el('input', { name: 'user_name', required: true, autocomplete: 'off' });
  const password = el('input', { name: 'user_password', type: 'password', required: true, autocomplete: 'new-password' });
  render(
    el('h2', {}, 'Users'),
    form('Create a user', [field('User name', name), field('Initial password', password)], 'Create user', async () => {
      await api('POST', '/v3/users', { user: { name: name.value, password: password.value } });
      password.value = '';
      await users(chosen);
    }),
    field('Project of the roles', projectChoice),
    el('table', { 'aria-label': 'Users' },
      el('thead', {}, el('tr', {}, ['User', 'Status', `Roles in ${shownProject.name}`, ''].map((h) => el('th', {}, h)))),
      el('tbody', {}, rows)),
    await accessKeys(chosen || me, shownKey),
    projectsPanel(projects, true, chosen),
  );
}

// ---------------------------------------------------------------- request tester

const utf8 = new TextEncoder();
const toHex = (buffer) =>
  Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, '0')).join('');
const sha256Hex = async (bytes) => toHex(await crypto.subtle.digest('SHA-256', bytes));

async function hmacHex(secret, text) {
  const key = await crypto.subtle.importKey(
    'raw', utf8.encode(secret), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  return toHex(await crypto.subtle.sign('HMAC', key, utf8.encode(text)));
}

/** The signers' E(s): UTF-8 bytes, A–Z a–z 0–9 - _ . ~ kept, every other byte %XX. */
function encodePart(text) {
  let out = '';
  for (const byte of utf8.encode(text)) {
    const c = String.fromCharCode(byte);
    out += /[A-Za-z0-9\-_.~]/.test(c) ? c : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** Percent-decoding (`+` stays `+`); text that does not decode stays as it was. */
function decodePart(text) {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** Compares strings by code point, as the signers sort. */
function byCodePoint(a, b) {
  const x = Array.from(a, (c) => c.codePointAt(0));
  const y = Array.from(b, (c) => c.codePointAt(0));
  for (let i = 0; i < Math.min(x.length, y.length); i += 1) {
    if (x[i] !== y[i]) return x[i] - y[i];
  }
  return x.length - y.length;
}

/** The canonical query of a raw query string (the spec's §5.2). */
function canonicalQuery(query) {
  const items = query.split('&').filter(Boolean).map((item) => {
    const at = item.indexOf('=');
    return at < 0 ? [decodePart(item), ''] : [decodePart(item.slice(0, at)), decodePart(item.slice(at + 1))];
  }).filter(([key]) => key !== '');
  items.sort((a, b) => byCodePoint(a[0], b[0]) || byCodePoint(a[1], b[1]));
  return items.map(([key, value]) => `${encodePart(key)}=${encodePart(value)}`).join('&');
}

/** The canonical URI of a raw path: decoded, each segment encoded, ending in `/`. */
function canonicalUri(path) {
  const uri = decodePart(path).split('/').map(encodePart).join('/');
  return uri.endsWith('/') ? uri : `${uri}/`;
}

/**
 * Signs a call as the official SDK-HMAC-SHA256 signers do: every header given is signed,
 * with `host` and `x-sdk-date`. Returns the headers to send (with `Authorization`), the
 * query to send (in canonical form) and the canonical request.
 */
export async function signRequest({ method, url, headers, body, key, secret, date }) {
  const target = new URL(url);
  const sdkDate = date ?? new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d+/, '');
  const all = new Map();
  for (const [name, value] of headers) all.set(name.toLowerCase(), value.trim());
  all.set('host', target.host);
  all.set('x-sdk-date', sdkDate);
  const names = [...all.keys()].sort();
  const payload = all.get('x-sdk-content-sha256') ?? await sha256Hex(utf8.encode(body));
  const query = canonicalQuery(target.search.replace(/^\?/, ''));
  const canonical = [
    method.toUpperCase(),
    canonicalUri(target.pathname),
    query,
    names.map((name) => `${name}:${all.get(name)}\n`).join(''),
    names.join(';'),
    payload,
  ].join('\n');
  const toSign = `SDK-HMAC-SHA256\n${sdkDate}\n${await sha256Hex(utf8.encode(canonical))}`;
  const signature = await hmacHex(secret, toSign);
  const sent = new Map([...all].filter(([name]) => name !== 'host'));
  sent.set('authorization',
    `SDK-HMAC-SHA256 Access=${key}, SignedHeaders=${names.join(';')}, Signature=${signature}`);
  return { headers: sent, query, canonical };
}

/** `Name: value` lines as pairs; a line without a colon is refused. */
function headerLines(text) {
  return text.split('\n').map((line) => line.trim()).filter(Boolean).map((line) => {
    const at = line.indexOf(':');
    if (at <= 0) throw new Error(`header line "${line}" has no "name: value"`);
    return [line.slice(0, at).trim(), line.slice(at + 1).trim()];
  });
}

/** The two canonical requests side by side, each line that differs marked. */
function canonicalDiff(ours, theirs) {
  const a = ours.split('\n');
  const b = theirs.split('\n');
  const rows = Math.max(a.length, b.length);
  const differ = [];
  for (let i = 0; i < rows; i += 1) if (a[i] !== b[i]) differ.push(i);
  const column = (title, lines, id) => el('div', {},
    el('h4', {}, title),
    el('pre', { id, class: 'canonical' }, Array.from({ length: rows }, (_, i) =>
      el('div', {
        class: differ.includes(i) ? 'differs' : null,
        'data-line': i + 1,
      }, lines[i] ?? ''))));
  return el('section', { 'aria-label': 'Canonical requests', id: 'canonical-diff' },
    el('p', { role: 'status' }, differ.length === 0
      ? 'The canonical requests are the same: the signature was made with another secret (or key) than the app’s.'
      : `${differ.length} line${differ.length > 1 ? 's' : ''} of the canonical request differ (marked).`),
    el('div', { class: 'columns' },
      column('Built by this browser', a, 'canonical-ours'),
      column('Built by the gateway', b, 'canonical-gateway')));
}

async function tester() {
  const [apis, appList] = await Promise.all([
    allApis(),
    api('GET', inProject('/app-auth/apps?limit=100')),
  ]);
  const apiChoice = el('select', { name: 'api', 'aria-label': 'API' }, apis.map((a, i) =>
    el('option', { value: String(i) }, `${a.service} · ${a.api_name} (${a.auth_type})`)));
  const appChoice = el('select', { name: 'app', 'aria-label': 'App' },
    el('option', { value: '' }, '(none)'),
    appList.apps.map((app) => el('option', { value: app.app_id }, app.app_name)));
  const key = el('input', { name: 'app_key', autocomplete: 'off', size: 34 });
  const secret = el('input', { name: 'app_secret', type: 'password', autocomplete: 'off', size: 34 });
  const method = el('select', { name: 'method', 'aria-label': 'Method' },
    ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'].map((m) => el('option', { value: m }, m)));
  const subPath = el('input', { name: 'sub_path', placeholder: '/v1/chat/completions', size: 30 });
  const query = el('input', { name: 'query', placeholder: 'a=1&b=2', size: 20 });
  const headers = el('textarea', { name: 'headers', rows: 3, cols: 40, placeholder: 'Content-Type: application/json' });
  const body = el('textarea', { name: 'body', rows: 4, cols: 60 });
  const status = el('p', { id: 'tester-status', role: 'status' });
  const output = el('pre', { id: 'tester-output', 'aria-label': 'Answer', tabindex: '0' });
  const diff = el('div', { id: 'tester-diff' });

  appChoice.addEventListener('change', () => guarded(async () => {
    key.value = '';
    secret.value = '';
    if (!appChoice.value) return;
    const detail = await api('GET', inProject(`/app-auth/apps/${id(appChoice.value)}?iphertext_enabled=true`));
    const app = detail.app ?? detail;
    key.value = app.app_key;
    secret.value = app.app_secret;
  }));

  const send = async () => {
    const chosen = apis[Number(apiChoice.value)];
    if (!chosen) throw new Error('choose an API first');
    status.textContent = 'Sending…';
    output.textContent = '';
    diff.replaceChildren();
    const url = new URL(chosen.predict_url + subPath.value.trim());
    url.search = query.value.trim().replace(/^\?/, '');
    const lines = headerLines(headers.value);
    const hasBody = !['GET', 'HEAD'].includes(method.value);
    let sent = new Map(lines.map(([name, value]) => [name.toLowerCase(), value]));
    let canonical = null;
    if (key.value && secret.value) {
      const signed = await signRequest({
        method: method.value, url: url.href, headers: lines,
        body: hasBody ? body.value : '', key: key.value, secret: secret.value,
      });
      sent = signed.headers;
      canonical = signed.canonical;
      url.search = signed.query;
    }
    const reply = await fetch(url.href, {
      method: method.value,
      headers: Object.fromEntries(sent),
      body: hasBody ? body.value : undefined,
    });
    const requestId = reply.headers.get('x-request-id') || '(none)';
    status.textContent = `${reply.status} ${reply.statusText} · request id ${requestId} · receiving…`;
    const reader = reply.body.getReader();
    const text = new TextDecoder();
    let whole = '';
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      const part = text.decode(value, { stream: true });
      whole += part;
      output.append(part);
    }
    status.textContent = `${reply.status} ${reply.statusText} · request id ${requestId} · done`;
    if (reply.status === 401 && canonical) {
      let message = '';
      try {
        message = JSON.parse(whole).error_msg || '';
      } catch {
        message = '';
      }
      const at = message.indexOf('canonicalRequest:');
      if (at >= 0) {
        // The gateway shows each line break of its canonical request as `|`.
        const theirs = message.slice(at + 'canonicalRequest:'.length).split('|').join('\n');
        diff.replaceChildren(canonicalDiff(canonical, theirs));
      }
    }
  };

  render(
    el('h2', {}, 'Request tester'),
    el('p', { class: 'muted' },
      'Calls an API through the gateway, signed here in the browser with the app’s key and secret (SDK-HMAC-SHA256, as the official signers do). Nothing is sent to the console’s server.'),
    apis.length === 0 && el('p', { class: 'muted' }, 'No API yet.'),
    form('Send a call', [
      field('API', apiChoice), field('App', appChoice), field('AppKey', key), field('AppSecret', secret),
      field('Method', method), field('Sub-path', subPath), field('Query', query),
      field('Headers, one per line', headers), field('Body', body),
    ], 'Send', send),
    status, output, diff,
  );
}

// ---------------------------------------------------------------- usage

/** The periods the usage page shows: length in ms and the API's granularity for it. */
const PERIODS = {
  hour: { ms: 3600e3, granularity: 'minute', step: 60e3, label: 'Last hour' },
  day: { ms: 86400e3, granularity: 'hour', step: 3600e3, label: 'Last day' },
  week: { ms: 7 * 86400e3, granularity: 'hour', step: 3600e3, label: 'Last week' },
};

/** The sums the page shows: field of the usage API, heading, chart and line colour. */
const SUMS = [
  ['requests', 'Requests', 'calls', '#3b4d75'],
  ['client_errors', '4xx', 'calls', '#e0a800'],
  ['server_errors', '5xx', 'calls', '#b42318'],
  ['throttled', '429', 'calls', '#7a3db8'],
  ['calls', 'Model calls', null, null],
  ['prompt_tokens', 'Prompt tokens', 'tokens', '#1a7f5a'],
  ['completion_tokens', 'Completion tokens', 'tokens', '#c2410c'],
  ['total_tokens', 'Total tokens', null, null],
];

/** The charts drawn now, resized with the window. */
let charts = [];
window.addEventListener('resize', () => {
  for (const chart of charts) chart.setSize({ width: chartWidth(), height: 220 });
});
const chartWidth = () => Math.max(280, Math.min(1100, $('#main').clientWidth - 40));

/** A uPlot chart of the `SUMS` of one kind over time, with a caption. */
function chart(kind, caption, times, buckets) {
  const sums = SUMS.filter(([, , k]) => k === kind);
  const box = el('div', { class: 'chart' });
  const figure = el('figure', { 'aria-label': caption }, el('figcaption', {}, caption), box);
  const data = [times.map((t) => t / 1000), ...sums.map(([f]) => times.map((t) => buckets.get(t)?.[f] ?? 0))];
  const made = new window.uPlot({
    width: chartWidth(),
    height: 220,
    series: [{}, ...sums.map(([, label, , stroke]) => ({ label, stroke, width: 2, points: { show: false } }))],
    axes: [{}, { size: 60 }],
    scales: { y: { range: (u, min, max) => [0, Math.max(1, max)] } },
  }, data, box);
  charts.push(made);
  return figure;
}

/** Calls by answer and model tokens per app and API, over the last hour, day or week. */
async function usage(chosen = {}) {
  const choice = { period: 'day', app: '', api: '', ...chosen };
  const period = PERIODS[choice.period];
  const to = Date.now();
  const from = Math.floor((to - period.ms) / period.step) * period.step + period.step;
  const query = new URLSearchParams({ granularity: period.granularity, from, to });
  if (choice.app) query.set('app_id', choice.app);
  if (choice.api) query.set('api_id', choice.api);
  const [answer, appList, apis] = await Promise.all([
    api('GET', inProject(`/app-auth/usage?${query}`)),
    api('GET', inProject('/app-auth/apps?limit=100')),
    allApis(),
  ]);
  const appName = new Map(appList.apps.map((a) => [a.app_id, a.app_name]));
  const apiName = new Map(apis.map((a) => [a.api_id, `${a.service} · ${a.api_name}`]));
  // Every period's start, those without calls included; buckets summed over apps and APIs.
  const times = [];
  for (let t = Math.floor(from / period.step) * period.step; t < to; t += period.step) times.push(t);
  const byTime = new Map();
  const byPair = new Map();
  for (const bucket of answer.usage) {
    for (const [map, key] of [[byTime, bucket.start], [byPair, `${bucket.app_id}\n${bucket.api_id}`]]) {
      const sum = map.get(key) ?? { app_id: bucket.app_id, api_id: bucket.api_id };
      for (const [f] of SUMS) sum[f] = (sum[f] ?? 0) + bucket[f];
      map.set(key, sum);
    }
  }
  const pick = (name, label, value, options) => el('select', {
    name, 'aria-label': label,
    onchange: (event) => guarded(() => usage({ ...choice, [name]: event.target.value })),
  }, options.map(([v, text]) => el('option', { value: v, selected: v === value }, text)));
  const appLabel = (appId) => (appId ? appName.get(appId) ?? appId : '(not an app)');
  const cells = (sum) => SUMS.map(([f]) => el('td', { class: 'number' }, String(sum[f] ?? 0)));
  charts = [];
  const root = el('section', { id: 'usage', 'aria-label': 'Usage' },
    el('h2', {}, 'Usage'),
    el('div', { class: 'controls' },
      field('Period', pick('period', 'Period', choice.period, Object.entries(PERIODS).map(([k, p]) => [k, p.label]))),
      field('App', pick('app', 'App', choice.app, [['', 'All apps'], ...appList.apps.map((a) => [a.app_id, a.app_name])])),
      field('API', pick('api', 'API', choice.api, [['', 'All APIs'], ...apis.map((a) => [a.api_id, apiName.get(a.api_id)])])),
      el('button', { type: 'button', class: 'secondary', onclick: () => guarded(() => usage(choice)) }, 'Refresh')),
    el('table', { 'aria-label': 'Totals' },
      el('thead', {}, el('tr', {}, SUMS.map(([, h]) => el('th', { class: 'number' }, h)))),
      el('tbody', {}, el('tr', {}, cells(answer.total)))),
  );
  render(root);
  const shown = [
    chart('calls', `Calls per ${period.granularity}`, times, byTime),
    chart('tokens', `Model tokens per ${period.granularity}`, times, byTime),
    el('table', { 'aria-label': 'By app and API' },
      el('thead', {}, el('tr', {}, el('th', {}, 'App'), el('th', {}, 'API'),
        SUMS.map(([, h]) => el('th', { class: 'number' }, h)))),
      el('tbody', {}, [...byPair.values()].map((sum) => el('tr', {},
        el('td', {}, appLabel(sum.app_id)), el('td', {}, apiName.get(sum.api_id) ?? sum.api_id), cells(sum))))),
    byPair.size === 0 && el('p', { class: 'muted' }, 'No call in this period.'),
    el('p', { class: 'muted' }, 'Each gateway node adds its counts to the store every usage_flush_ms (10 s unless set).'),
  ];
  root.append(...shown.filter(Boolean));
}

// ---------------------------------------------------------------- navigation

const views = { services, apps, throttles, usage: () => usage(), users: () => users(), tester };

function show(name) {
  for (const button of document.querySelectorAll('#nav [data-view]')) {
    if (button.dataset.view === name) button.setAttribute('aria-current', 'page');
    else button.removeAttribute('aria-current');
  }
  guarded(() => views[name]());
}

function start() {
  if (!session) {
    signIn();
    return;
  }
  $('#nav').hidden = false;
  $('#who').textContent = `${session.user} · ${session.project} · ${session.roles.join(', ') || 'no role'}`;
  show('services');
}

document.addEventListener('DOMContentLoaded', () => {
  for (const button of document.querySelectorAll('#nav [data-view]')) {
    button.addEventListener('click', () => show(button.dataset.view));
  }
  $('#sign-out').addEventListener('click', signOut);
  start();
});
