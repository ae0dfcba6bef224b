import { Button, Modal, ModalBody, ModalFooter, ModalHeader } from '@patternfly/react-core';
import type { ReactNode } from 'react';

/** Asks before something that cannot be undone; the confirm button says what it does. */
export function Confirm(props: {
  title: string;
  action: string;
  children: ReactNode;
  onConfirm: () => void;
  onCancel: () => void;
}) {
  return (
    <Modal
      isOpen
      variant="small"
      onClose={props.onCancel}
      aria-labelledby="confirm-title"
      aria-describedby="confirm-body"
    >
      <ModalHeader title={props.title} labelId="confirm-title" />
      <ModalBody id="confirm-body">{props.children}</ModalBody>
      <ModalFooter>
        <Button variant="danger" onClick={props.onConfirm}>
          {props.action}
        </Button>
        <Button variant="link" onClick={props.onCancel}>
          Cancel
        </Button>
      </ModalFooter>
    </Modal>
  );
}
