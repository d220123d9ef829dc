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

async function serviceApis(service) {
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
  const authType = el('select', { name: 'auth_type' },
    ['APP', 'IAM', 'NONE'].map((t) => el('option', { value: t }, t)));
  const appCode = el('input', { type: 'checkbox', name: 'support_app_code' });
  render(
    el('h2', {}, `APIs of ${service.service_name}`),
    el('p', { class: 'muted' }, 'Upstreams: ', service.upstreams.join(', ')),
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
    el('td', {}, app.app_name),
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

// ---------------------------------------------------------------- navigation

const views = { services, apps };

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
