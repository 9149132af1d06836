"""The dashboard's pages: sign-in and sign-out, the one-screen dashboard, and the goal form.

For `viewer` keys and up (an `integration` key cannot sign in); adding and editing goals needs
`manager`. Pages are HTML and are left out of the OpenAPI schema, which describes the JSON API.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse

from scoring.api_keys import role_allows
from scoring.dashboard_sessions import DashboardSession, end_session, find_key, start_session
from scoring.forecast_kpis import FORECAST_KPIS
from scoring.goal_store import (
    GoalNotFoundError,
    StoredGoal,
    add_goal,
    funnel_segment_keys,
    get_goal,
    update_goal,
)
from scoring.goals import DIRECTIONS, GoalError
from serve.dashboard.cache import worker_cache
from serve.dashboard.goals import field_messages, form_values, goal_from_form
from serve.dashboard.panels import KPI_TITLES
from serve.dashboard.rendering import page, static_response
from serve.dashboard.session import (
    SESSION_COOKIE,
    SIGN_IN_COOKIE,
    FormPost,
    clear_cookie,
    current_session,
    new_sign_in_token,
    read_form,
    same_origin,
    set_session_cookie,
    set_sign_in_cookie,
    tokens_match,
)
from serve.dashboard.view import Picks, build_view
from serve.deps import AppSettings, Engine, ForecastChampions, Funnels, Service

router = APIRouter(prefix="/dashboard", include_in_schema=False)

HOME = "/dashboard"
SIGN_IN = "/dashboard/sign-in"


def _redirect(url: str) -> Response:
    return RedirectResponse(url, status_code=303)


def _to_sign_in(request: Request) -> Response:
    response = _redirect(SIGN_IN)
    if SESSION_COOKIE in request.cookies:  # expired, signed out elsewhere, or its key revoked
        clear_cookie(response, request, SESSION_COOKIE)
    return response


def _message(
    status: int, title: str, text: str, session: DashboardSession | None = None
) -> Response:
    return page("message.html", status, title=title, text=text, session=session)


def _sign_in_page(request: Request, status: int = 200, error: str = "") -> Response:
    token = new_sign_in_token()
    response = page("sign_in.html", status, error=error, token=token, session=None)
    set_sign_in_cookie(response, request, token)
    return response


def _refused_post(request: Request, form: FormPost, session: DashboardSession) -> Response | None:
    """A 403 page for a post from another site or without the session's CSRF token."""
    if not same_origin(request) or not tokens_match(session.csrf_token, form.get("csrf_token")):
        return _message(
            403,
            "Form refused",
            "The form did not come from this dashboard page (or the page is from an earlier "
            "session). Reload the dashboard and try again.",
            session,
        )
    return None


def _not_manager(session: DashboardSession) -> Response | None:
    if role_allows(session.role, "manager"):
        return None
    return _message(
        403,
        "Managers only",
        f"Adding and editing goals needs a manager (or admin) key; you are signed in with "
        f"{session.role} key {session.key_name!r}.",
        session,
    )


# -- signing in and out -------------------------------------------------------------------------


@router.get("/sign-in")
async def sign_in_form(request: Request) -> Response:
    if await current_session(request) is not None:
        return _redirect(HOME)
    return _sign_in_page(request)


@router.post("/sign-in")
async def sign_in(request: Request, engine: Engine) -> Response:
    form = await read_form(request)
    if not same_origin(request):
        return _message(403, "Sign-in refused", "The sign-in form must come from this site.")
    if not tokens_match(request.cookies.get(SIGN_IN_COOKIE, ""), form.get("sign_in_token")):
        return _sign_in_page(request, 400, "The sign-in form had expired; enter the key again.")
    identity = await run_in_threadpool(find_key, engine, form.get("key").strip())
    if identity is None:
        return _sign_in_page(request, 401, "That key is unknown or revoked.")
    if not role_allows(identity.role, "viewer"):
        return _sign_in_page(
            request,
            403,
            f"An {identity.role} key cannot open the dashboard; sign in with a viewer, manager "
            "or admin key.",
        )
    previous = request.cookies.get(SESSION_COOKIE)
    if previous:
        await run_in_threadpool(end_session, engine, previous)
    token, _ = await run_in_threadpool(start_session, engine, identity)
    response = _redirect(HOME)
    set_session_cookie(response, request, token)
    clear_cookie(response, request, SIGN_IN_COOKIE)
    return response


@router.get("/sign-out")
async def sign_out_link() -> Response:
    return _redirect(HOME)  # signing out is a post (with the CSRF token), never a link


@router.post("/sign-out")
async def sign_out(request: Request, engine: Engine) -> Response:
    session = await current_session(request)
    if session is not None:
        refused = _refused_post(request, await read_form(request), session)
        if refused is not None:
            return refused
        await run_in_threadpool(end_session, engine, request.cookies.get(SESSION_COOKIE, ""))
    response = _redirect(SIGN_IN)
    clear_cookie(response, request, SESSION_COOKIE)
    return response


# -- the dashboard --------------------------------------------------------------------------------


@router.get("")
async def show_dashboard(
    request: Request,
    engine: Engine,
    funnels: Funnels,
    models: ForecastChampions,
    settings: AppSettings,
    service: Service,
) -> Response:
    session = await current_session(request)
    if session is None:
        return _to_sign_in(request)
    query = request.query_params
    picks = Picks.of(
        {"freq": query.get("freq", ""), "segment": query.get("segment", "")},
        query.getlist("by"),
    )
    view = await build_view(
        picks, engine, funnels, service.loaded, models, settings, worker_cache(request)
    )
    return page(
        "dashboard.html",
        session=session,
        view=view,
        manager=role_allows(session.role, "manager"),
        kpi_titles=KPI_TITLES,
    )


@router.get("/static/{name}")
async def static(name: str) -> Response:
    found = static_response(name)
    return found if found is not None else Response("not found", status_code=404)


# -- goals ----------------------------------------------------------------------------------------


def _goal_form(
    session: DashboardSession,
    stored: StoredGoal | None,
    values: dict[str, str],
    errors: dict[str, list[str]] | None = None,
    status: int = 200,
) -> Response:
    kpis = list(FORECAST_KPIS)
    if values.get("kpi") and values["kpi"] not in kpis:
        kpis.append(values["kpi"])  # a goal set elsewhere on a KPI the engine does not forecast
    return page(
        "goal_form.html",
        status,
        session=session,
        stored=stored,
        values=values,
        errors=errors or {},
        kpis=kpis,
        kpi_titles=KPI_TITLES,
        directions=DIRECTIONS,
    )


def _goal_id(text: str) -> int | None:
    return int(text) if text.isdigit() and 0 < int(text) < 2**31 else None


async def _stored_goal(engine: Engine, text: str) -> StoredGoal | None:
    goal_id = _goal_id(text)
    if goal_id is None:
        return None
    try:
        return await run_in_threadpool(get_goal, engine, goal_id)
    except GoalNotFoundError:
        return None


@router.get("/goals/new")
async def new_goal_form(request: Request) -> Response:
    session = await current_session(request)
    if session is None:
        return _to_sign_in(request)
    return _not_manager(session) or _goal_form(session, None, form_values(None))


@router.post("/goals")
async def create_goal(request: Request, engine: Engine) -> Response:
    session = await current_session(request)
    if session is None:
        return _to_sign_in(request)
    form = await read_form(request)
    refused = _not_manager(session) or _refused_post(request, form, session)
    if refused is not None:
        return refused
    try:
        keys = await run_in_threadpool(funnel_segment_keys, engine)
        stored = await run_in_threadpool(add_goal, engine, goal_from_form(form.fields, keys))
    except GoalError as error:
        values = {name: form.get(name) for name in form_values(None)}
        return _goal_form(session, None, values, field_messages(error), 422)
    return _redirect(f"{HOME}#goal-{stored.id}")


@router.get("/goals/{goal_id}/edit")
async def edit_goal_form(request: Request, goal_id: str, engine: Engine) -> Response:
    session = await current_session(request)
    if session is None:
        return _to_sign_in(request)
    refused = _not_manager(session)
    if refused is not None:
        return refused
    stored = await _stored_goal(engine, goal_id)
    if stored is None:
        return _message(404, "No such goal", f"There is no goal {goal_id}.", session)
    return _goal_form(session, stored, form_values(stored.goal))


@router.post("/goals/{goal_id}")
async def replace_goal(request: Request, goal_id: str, engine: Engine) -> Response:
    session = await current_session(request)
    if session is None:
        return _to_sign_in(request)
    form = await read_form(request)
    refused = _not_manager(session) or _refused_post(request, form, session)
    if refused is not None:
        return refused
    stored = await _stored_goal(engine, goal_id)
    if stored is None:
        return _message(404, "No such goal", f"There is no goal {goal_id}.", session)
    try:
        keys = await run_in_threadpool(funnel_segment_keys, engine)
        goal = goal_from_form(form.fields, keys)
        stored = await run_in_threadpool(update_goal, engine, stored.id, goal)
    except GoalError as error:
        values = {name: form.get(name) for name in form_values(None)}
        return _goal_form(session, stored, values, field_messages(error), 422)
    except GoalNotFoundError:
        return _message(404, "No such goal", f"Goal {goal_id} was removed meanwhile.", session)
    return _redirect(f"{HOME}#goal-{stored.id}")
