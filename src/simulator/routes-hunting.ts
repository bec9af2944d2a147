import { huntingTables } from './hunting-tables.js'
import { KqlError, runKql } from './kql.js'
import { badRequest, jsonBody } from './router.js'
import type { Reply, RouteContext, RouteDefinition } from './router.js'

const EXAMPLE = '{"Query": "<KQL>"}'

/** Runs the query over the sample tenant's hunting tables; a query it cannot read is the API's 400 with the reason. */
function hunt (ctx: RouteContext): Reply {
  const query = jsonBody(ctx.body, EXAMPLE)['Query']
  if (typeof query !== 'string' || query.trim() === '') throw badRequest(`Request body is incorrect: send ${EXAMPLE}.`, 'InvalidRequestBody')
  try {
    return { status: 200, body: runKql(query, huntingTables(ctx.state.data), { now: ctx.state.clock.now() }) }
  } catch (error) {
    if (error instanceof KqlError) throw badRequest(error.message)
    throw error
  }
}

export const HUNTING_ROUTES: readonly RouteDefinition[] = [
  { method: 'POST', path: '/api/advancedqueries/run', handle: hunt }
]
