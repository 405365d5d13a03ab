import { createBullBoard } from "@bull-board/api";
import { BullMQAdapter } from "@bull-board/api/bullMQAdapter";
import { ExpressAdapter } from "@bull-board/express";
import type { Queue } from "bullmq";
import type { Router } from "express";

/** Path under which the admin server mounts Bull Board. */
export const BULL_BOARD_PATH = "/admin/queues";

const QUEUE_DESCRIPTIONS: Record<string, string> = {
  "hydra-delivery": "Batches of one lane each, sent to Hydra. Failed jobs are dead letters: retry one to replay it.",
  "engage-sync": "Engage audience syncs.",
};

/**
 * Builds the Bull Board router over `queues`. With `readOnly`, every queue is in Bull
 * Board's readOnlyMode, so its API rejects retry, clean, promote and the other changes
 * with 405 on the server; allowRetries=false only hides the retry buttons.
 */
export function createBullBoardRouter(queues: Queue[], readOnly: boolean): Router {
  const serverAdapter = new ExpressAdapter();
  serverAdapter.setBasePath(BULL_BOARD_PATH);

  createBullBoard({
    queues: queues.map(
      (queue) =>
        new BullMQAdapter(queue, {
          readOnlyMode: readOnly,
          allowRetries: !readOnly,
          description: QUEUE_DESCRIPTIONS[queue.name] ?? "",
        }),
    ),
    serverAdapter,
    options: { uiConfig: { boardTitle: "hydra-sync" } },
  });

  return serverAdapter.getRouter() as Router;
}
