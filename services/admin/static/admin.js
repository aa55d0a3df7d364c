// Progressive enhancement only: every page works without it.
// A button with data-confirm asks before its form is sent.
document.addEventListener('submit', (event) => {
  const button = event.submitter
  const question = button?.getAttribute('data-confirm')
  if (question && !window.confirm(question)) event.preventDefault()
})

// Copy buttons: one after each element marked data-copy-label (DNS values, zone-file lines)
// and each <pre> (the credential settings blocks). Without this script there are no
// buttons, and the text is there to select by hand.
function copyableLabel(el) {
  const given = el.getAttribute('data-copy-label')
  if (given) return given
  // A <pre> is named by the heading just before it ("For a PDS (pds.env)").
  let prev = el.previousElementSibling
  while (prev && !/^H[1-6]$/.test(prev.tagName)) prev = prev.previousElementSibling
  return prev ? prev.textContent.trim() : 'this text'
}

function selectText(el) {
  const range = document.createRange()
  range.selectNodeContents(el)
  const selection = window.getSelection()
  selection.removeAllRanges()
  selection.addRange(range)
}

let copyCount = 0
function addCopyButton(el) {
  if (!el.id) el.id = `copyable-${++copyCount}`
  const button = document.createElement('button')
  button.type = 'button'
  button.className = 'copy'
  button.setAttribute('data-copy', `#${el.id}`)
  button.setAttribute('aria-label', `Copy the ${copyableLabel(el)}`)
  button.textContent = 'Copy'
  // The confirmation is visible and announced: a polite live region beside the button.
  const said = document.createElement('span')
  said.className = 'copy-status'
  said.setAttribute('role', 'status')
  const wrap = document.createElement('span')
  wrap.className = 'copy-controls'
  wrap.append(button, said)
  el.after(wrap)
}

document.querySelectorAll('main [data-copy-label], main pre').forEach(addCopyButton)

document.addEventListener('click', async (event) => {
  const button = event.target instanceof Element ? event.target.closest('button[data-copy]') : null
  if (!button) return
  const target = document.querySelector(button.getAttribute('data-copy'))
  const said = button.nextElementSibling
  if (!target || !said) return
  try {
    await navigator.clipboard.writeText(target.textContent)
    said.textContent = 'Copied'
  } catch {
    // No clipboard access (an http page that is not loopback, a refused permission): select it instead.
    selectText(target)
    said.textContent = 'Selected: press Ctrl+C (⌘C) to copy'
  }
  clearTimeout(button.copyTimer)
  button.copyTimer = setTimeout(() => {
    said.textContent = ''
  }, 4000)
})

// The labels page after publishing (#labels-watch): asks the admin every 2 s for the
// account's labels and this domain's stage, until the member has a step to take, both labels
// are there, or the page's data-timeout (admin.enroll.labelsTimeout) is over; then it shows
// the server-rendered explanation with the latest diagnosis. The sections are the server's,
// shown or hidden here by the answer's stage.
const watch = document.querySelector('[data-watch]')
if (watch) watchLabels(watch)

const STAGE_TEXT = {
  verifying: 'Waiting for the labeler to verify the attestation.',
  activate: 'The labeler verified the attestation: activate the domain.',
  member: 'The domain is active: waiting for relay-member.',
  done: 'Both labels are on your account.',
}

function watchLabels(section) {
  const url = section.getAttribute('data-watch')
  const deadline = Date.now() + (Number(section.getAttribute('data-timeout')) || 120000)
  const status = document.getElementById('labels-status')
  const list = document.getElementById('labels-list')
  const show = (id, on) => {
    const el = document.getElementById(id)
    if (el) el.hidden = !on
  }
  const render = (state) => {
    list.replaceChildren(
      ...(state.labels.length ? state.labels : [null]).map((label) => {
        const li = document.createElement('li')
        if (!label) {
          li.textContent = 'No labels yet.'
          return li
        }
        const name = document.createElement('strong')
        name.textContent = label.val
        li.append(name, ` since ${label.cts}${label.exp ? `, until ${label.exp}` : ''}`)
        return li
      }),
    )
    const text = `${STAGE_TEXT[state.stage] ?? ''}${state.reason ? ` The labels could not be read: ${state.reason}.` : ''}`
    if (status.textContent !== text) status.textContent = text
    section.setAttribute('data-stage', state.stage)
    show('labels-activate', state.stage === 'activate')
    show('labels-credentials', state.stage === 'member' || state.stage === 'done')
    if (state.stage === 'activate' || state.stage === 'done') show('labels-help', false)
  }
  const explain = (state) => {
    const items = document.getElementById('labels-diagnosis')
    if (items && state?.diagnosis?.length) {
      items.replaceChildren(
        ...state.diagnosis.map((d) => {
          const li = document.createElement('li')
          li.textContent = d
          return li
        }),
      )
    }
    show('labels-help', true)
  }
  let last = null
  const tick = async () => {
    try {
      const res = await fetch(url, { headers: { Accept: 'application/json' }, credentials: 'same-origin' })
      if (!res.ok || !(res.headers.get('content-type') ?? '').includes('application/json')) {
        status.textContent = 'The page could not ask for the labels (signed out?): use “Look again”.'
        return
      }
      last = await res.json()
      render(last)
    } catch {
      // The admin is away for a moment: keep asking until the deadline.
    }
    if (last && (last.stage === 'activate' || last.stage === 'done')) return
    if (Date.now() >= deadline) {
      explain(last)
      return
    }
    setTimeout(tick, 2000)
  }
  // The page as served is current; the first question waits the same 2 s as the rest.
  if (section.getAttribute('data-stage') === 'activate' || section.getAttribute('data-stage') === 'done') return
  setTimeout(tick, 2000)
}
